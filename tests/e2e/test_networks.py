"""Issue 8 on a 3-host lab: bridge, the default network, ports, egress, isolation, host,
none, container and macvlan, seen as a user sees them (exec, curl, ping, nslookup)."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Lab, wait_until
from tests.e2e.test_overlay import pings, reaches, resolve

pytestmark = pytest.mark.e2e

OUTSIDE_PORT = 9000

HTTPD = ('mkdir -p /www && echo "hello from $(hostname)" > /www/index.html'
         ' && exec httpd -f -p 80 -h /www')

MANIFEST = f"""\
apiVersion: berth/v1
kind: Network
metadata: {{name: local}}
spec: {{driver: bridge, subnet: 10.50.0.0/24}}
---
apiVersion: berth/v1
kind: Network
metadata: {{name: local2}}
spec: {{driver: bridge, subnet: 10.51.0.0/24}}
---
apiVersion: berth/v1
kind: Network
metadata: {{name: quiet}}
spec: {{driver: bridge, subnet: 10.52.0.0/24, options: {{icc: "false"}}}}
---
apiVersion: berth/v1
kind: Network
metadata: {{name: sealed}}
spec: {{driver: bridge, subnet: 10.53.0.0/24, internal: true}}
---
apiVersion: berth/v1
kind: Network
metadata: {{name: over}}
spec: {{driver: overlay, subnet: 10.54.0.0/24}}
---
apiVersion: berth/v1
kind: Network
metadata: {{name: mac}}
spec: {{driver: macvlan, subnet: 10.55.0.0/24, options: {{parent: eth0}}}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: br}}
spec:
  replicas: 2
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [local]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: far}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [local]
  placement: {{node: h2}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: other}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [local2]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: q}}
spec:
  replicas: 2
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [quiet]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: sealed}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [sealed]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: plain}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  placement: {{node: h3}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: ov}}
spec:
  image: busybox:latest
  command: [sh, -c, '{HTTPD}']
  networks: [over]
  ports: ["8081:80"]
  placement: {{node: h2}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: web}}
spec:
  image: busybox:latest
  command: [sh, -c, '{HTTPD}']
  ports: ["8080:80", "80"]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: hostnet}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  network_mode: host
  placement: {{node: h3}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: nonet}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  network_mode: none
---
apiVersion: berth/v1
kind: Service
metadata: {{name: side}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  network_mode: "service:web"
---
apiVersion: berth/v1
kind: Service
metadata: {{name: m}}
spec:
  replicas: 3
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [mac]
"""


def host_ns(lab: Lab, node: str) -> str:
    return next(str(h["netns"]) for h in lab.info["hosts"] if h["name"] == node)


def host_ip(lab: Lab, node: str) -> str:
    return next(str(h["underlay_ip"]) for h in lab.info["hosts"] if h["name"] == node)


def in_ns(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv],
                          capture_output=True, text=True, timeout=timeout)


def fetch_from(ns: str, url: str) -> str:
    return in_ns(ns, "curl", "-sS", "--max-time", "5", url).stdout


def wget_in(lab: Lab, ctr: str, url: str) -> str:
    # busybox 1.35's wget segfaults with -T, so the time limit comes from `timeout`.
    proc = lab.ctl("exec", ctr, "--", "timeout", "5", "wget", "-q", "-O", "-", url,
                   check=False)
    return proc.stdout


def ip_on(lab: Lab, ctr: str, network: str) -> str:
    return str(lab.containers()[ctr]["networks"][network]["ip"])


@pytest.fixture(scope="module")
def outside(lab: Lab) -> Iterator[dict[str, Any]]:
    """A web server on the lab's simulated outside host that answers with the caller's
    address (a CGI script of busybox httpd)."""
    info = dict(lab.info["outside"])
    root = Path(lab.info["state_dir"]) / "outside-www"
    (root / "cgi-bin").mkdir(parents=True, exist_ok=True)
    script = root / "cgi-bin" / "addr"
    script.write_text('#!/bin/busybox sh\necho "Content-Type: text/plain"\necho\n'
                      'echo "$REMOTE_ADDR"\n')
    script.chmod(0o755)
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{info['netns']}", "busybox",
                             "httpd", "-f", "-p", f"{info['address']}:{OUTSIDE_PORT}",
                             "-h", str(root)])
    try:
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = lab_factory(3)
    path = tmp_path_factory.mktemp("net") / "all.yaml"
    path.write_text(MANIFEST)
    lab.ctl("apply", "-f", str(path), "--wait")
    yield lab


# -- bridge --------------------------------------------------------------------------


def test_bridge_replicas_on_one_node_ping_by_name(lab: Lab) -> None:
    reaches(lab, "br-1", "br-2")
    reaches(lab, "br-2", "br-1")


def test_bridge_names_do_not_cross_nodes(lab: Lab) -> None:
    # (Its address may well answer: h1 hands out the same addresses to its own replicas.)
    assert resolve(lab, "br-1", "far-1", "10.0.0.0/8") == []
    assert resolve(lab, "far-1", "br-1", "10.0.0.0/8") == []
    assert not pings(lab, "br-1", "far-1")


def test_bridge_subnet_is_reused_per_node(lab: Lab) -> None:
    rows = lab.containers()
    # IPAM is per node: the first replica on h2 gets the first address, like br-1 on h1.
    assert rows["far-1"]["networks"]["local"]["ip"] == "10.50.0.2"
    assert sorted(rows[n]["networks"]["local"]["ip"] for n in ("br-1", "br-2")) == [
        "10.50.0.2", "10.50.0.3"]


# -- isolation ----------------------------------------------------------------------


def test_two_bridges_on_one_node_are_isolated(lab: Lab) -> None:
    assert resolve(lab, "br-1", "other-1", "10.0.0.0/8") == []
    assert not pings(lab, "br-1", ip_on(lab, "other-1", "local2"))
    assert not pings(lab, "other-1", ip_on(lab, "br-1", "local"))


def test_icc_false_blocks_pairs_on_the_same_bridge(lab: Lab) -> None:
    assert not pings(lab, "q-1", ip_on(lab, "q-2", "quiet"))
    assert not pings(lab, "q-2", ip_on(lab, "q-1", "quiet"))


# -- the default network -------------------------------------------------------------


def test_service_without_networks_joins_the_default_bridge(lab: Lab) -> None:
    row = lab.containers()["plain-1"]
    assert list(row["networks"]) == ["bridge"]
    nets = json.loads(lab.ctl("get", "networks", "-o", "json").stdout)
    assert any(n["name"] == "bridge" and n["driver"] == "bridge" for n in nets)


def test_default_bridge_has_no_dns_by_name(lab: Lab) -> None:
    resolv = lab.ctl("exec", "plain-1", "--", "cat", "/etc/resolv.conf").stdout
    assert "127.0.0.11" not in resolv


# -- egress --------------------------------------------------------------------------


@pytest.mark.parametrize(("ctr", "node"), [("plain-1", "h3"), ("br-1", "h1"), ("ov-1", "h2")])
def test_egress_leaves_with_the_node_address(
    lab: Lab, outside: dict[str, Any], ctr: str, node: str
) -> None:
    url = f"http://{outside['address']}:{OUTSIDE_PORT}/cgi-bin/addr"
    assert wget_in(lab, ctr, url).strip() == host_ip(lab, node)


def test_internal_network_has_no_egress(lab: Lab, outside: dict[str, Any]) -> None:
    url = f"http://{outside['address']}:{OUTSIDE_PORT}/cgi-bin/addr"
    assert wget_in(lab, "sealed-1", url) == ""


# -- ports ---------------------------------------------------------------------------


def published(lab: Lab, ctr: str) -> list[dict[str, Any]]:
    return list(lab.containers()[ctr]["ports"])


def test_published_port_answers_from_another_host(lab: Lab) -> None:
    url = f"http://{host_ip(lab, 'h1')}:8080/"
    wait_until("web answers on h1:8080", lambda: "hello from web-1" in fetch_from(
        host_ns(lab, "h2"), url))


def test_random_port_is_reported_and_reachable(lab: Lab) -> None:
    ports = published(lab, "web-1")
    random = [p for p in ports if p["host_port"] != 8080]
    assert len(random) == 1 and 32768 <= random[0]["host_port"] <= 60999
    wide = lab.ctl("get", "containers", "-o", "wide").stdout
    assert re.search(rf"web-1 .*:{random[0]['host_port']}->80/tcp", wide), wide
    url = f"http://{host_ip(lab, 'h1')}:{random[0]['host_port']}/"
    assert "hello from web-1" in fetch_from(host_ns(lab, "h3"), url)


def test_published_port_from_the_node_itself(lab: Lab) -> None:
    h1 = host_ns(lab, "h1")
    assert "hello from web-1" in fetch_from(h1, f"http://{host_ip(lab, 'h1')}:8080/")
    assert "hello from web-1" in fetch_from(h1, "http://127.0.0.1:8080/")


def test_hairpin_container_reaches_its_own_published_port(lab: Lab) -> None:
    assert "hello from web-1" in wget_in(lab, "web-1", f"http://{host_ip(lab, 'h1')}:8080/")


def test_overlay_container_publishes_on_its_node(lab: Lab) -> None:
    url = f"http://{host_ip(lab, 'h2')}:8081/"
    assert "hello from ov-1" in fetch_from(host_ns(lab, "h1"), url)


# -- host, none, container ------------------------------------------------------------


def test_host_mode_sees_the_node_eth0(lab: Lab) -> None:
    out = lab.ctl("exec", "hostnet-1", "--", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert host_ip(lab, "h3") in out
    assert lab.ctl("exec", "hostnet-1", "--", "hostname").stdout.strip() == "h3"


def test_none_mode_has_only_loopback(lab: Lab) -> None:
    out = lab.ctl("exec", "nonet-1", "--", "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]


def test_container_mode_shares_the_target_network(lab: Lab) -> None:
    rows = lab.containers()
    assert rows["side-1"]["node"] == rows["web-1"]["node"]
    ip = next(iter(rows["web-1"]["networks"].values()))["ip"]
    out = lab.ctl("exec", "side-1", "--", "ip", "-o", "-4", "addr").stdout
    assert ip in out
    assert "hello from web-1" in wget_in(lab, "side-1", "http://127.0.0.1:80/")


def test_macvlan_on_eth0_pings_by_name_across_hosts(lab: Lab) -> None:
    rows = lab.containers()
    assert sorted(rows[f"m-{i}"]["node"] for i in (1, 2, 3)) == ["h1", "h2", "h3"]
    for src, dst in (("m-1", "m-2"), ("m-2", "m-3"), ("m-3", "m-1")):
        reaches(lab, src, dst)


def test_netcheck_is_green_on_bridge_and_macvlan(lab: Lab) -> None:
    for net in ("local", "mac"):
        proc = lab.ctl("netcheck", net, "-o", "plain", check=False, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# -- what changes the lab: keep these last ------------------------------------------------


def nft_ruleset(lab: Lab, node: str) -> str:
    return in_ns(host_ns(lab, node), "nft", "list", "ruleset").stdout


def ip_berth_chains(lab: Lab, node: str) -> set[str]:
    """The chains of ``table ip berth`` on ``node`` (none when the table is gone)."""
    done = in_ns(host_ns(lab, node), "nft", "-j", "list", "table", "ip", "berth")
    if done.returncode != 0:
        return set()
    return {str(o["chain"]["name"]) for o in json.loads(done.stdout)["nftables"]
            if "chain" in o}


def test_joiner_is_recreated_with_its_target(lab: Lab, tmp_path: Path) -> None:
    before = lab.containers()
    changed = MANIFEST.replace("  ports: [\"8080:80\", \"80\"]\n",
                               "  ports: [\"8080:80\", \"80\"]\n  env: {ROUND: \"2\"}\n")
    assert changed != MANIFEST
    path = tmp_path / "changed.yaml"
    path.write_text(changed)
    lab.ctl("apply", "-f", str(path), "--wait")

    def both_new() -> bool:
        rows = lab.containers()
        return all(rows[n]["state"] == "running" and rows[n]["pid"] != before[n]["pid"]
                   for n in ("web-1", "side-1"))

    wait_until("web-1 and side-1 recreated", both_new)
    wait_until("side-1 reaches web-1 on localhost",
               lambda: "hello from web-1" in wget_in(lab, "side-1", "http://127.0.0.1:80/"))


def test_agent_restart_keeps_rules_and_connectivity(lab: Lab) -> None:
    before = {h: nft_ruleset(lab, h) for h in ("h1", "h2", "h3")}
    assert "table ip berth" in before["h1"]
    h1 = next(h for h in lab.info["hosts"] if h["name"] == "h1")
    os.kill(int(h1["agent_pid"]), signal.SIGKILL)
    lab.ctl("lab", "up", "--name", lab.name, "--hosts", "3")
    lab.refresh()
    reaches(lab, "br-1", "br-2")
    url = f"http://{host_ip(lab, 'h1')}:8080/"
    wait_until("web answers on h1:8080 after the restart",
               lambda: "hello from web-1" in fetch_from(host_ns(lab, "h2"), url))
    assert {h: nft_ruleset(lab, h) for h in ("h1", "h2", "h3")} == before


def test_delete_leaves_no_device_or_rule_on_any_node(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(MANIFEST)
    lab.ctl("delete", "-f", str(path))
    wait_until("every container gone", lambda: lab.containers() == {})

    def clean(node: str) -> bool:
        links = in_ns(host_ns(lab, node), "ip", "-o", "link").stdout
        names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
        berth = [n for n in names if n.startswith(("berth0", "bb-", "bo-", "vx-", "mvr"))
                 or re.fullmatch(r"v[0-9a-f]{14}|vo[0-9a-f]{11}", n)]
        # What stays is the node's ports, closed to containers (on other hosts too) for
        # as long as the node runs: no network's chain (owner chains are <owner>.<base>).
        owned = {c for c in ip_berth_chains(lab, node) if "." in c}
        return berth == [] and owned <= {"node-ports.filter-fwd"}

    for node in ("h1", "h2", "h3"):
        wait_until(f"{node} clean", functools.partial(clean, node))
