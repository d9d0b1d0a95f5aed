"""Issue 9, isolation, on a 3-host lab: from inside containers on an overlay, a bridge and
the default network (and ``network_mode: none``), a TCP connect to every berth and etcd port
on the node's addresses fails, while a published port, the embedded DNS and ping still
work. Each port has a real listener on every address of the node (the agent's own, or one
this test starts), so a connect fails because of the rules and for no other reason. The
same ports on another node, and the lab's etcd and controller, are closed to them too
(they would arrive there masqueraded, as from the node itself), while another port on
that node stays reachable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Lab, wait_until
from tests.e2e.test_networks import HTTPD, host_ip, host_ns, in_ns, ip_on
from tests.e2e.test_overlay import pings, resolve

pytestmark = pytest.mark.e2e

WHOAMI = str(Path(__file__).parents[1] / "whoami.py")
# etcd client and peer, controller gRPC and metrics, agent gRPC and metrics.
NODE_PORTS = (2379, 2380, 7700, 9101, 7071, 9102)
CONTAINERS = {"overlay": "ov-1", "bridge": "br-1", "default": "plain-1", "none": "nonet-1"}

MANIFEST = f"""\
apiVersion: berth/v1
kind: Network
metadata: {{name: over}}
spec: {{driver: overlay, subnet: 10.64.0.0/24}}
---
apiVersion: berth/v1
kind: Network
metadata: {{name: local}}
spec: {{driver: bridge, subnet: 10.65.0.0/24}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: ov}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [over]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: br}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [local]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: plain}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: nonet}}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  network_mode: none
  placement: {{node: h1}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: web}}
spec:
  image: busybox:latest
  command: [sh, -c, '{HTTPD}']
  ports: ["8080:80"]
  placement: {{node: h1}}
"""

GRAB = """\
apiVersion: berth/v1
kind: Service
metadata: {name: grab}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  ports: ["7071:80"]
  placement: {node: h1}
"""


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = lab_factory(3)
    path = tmp_path_factory.mktemp("ports") / "all.yaml"
    path.write_text(MANIFEST)
    lab.ctl("apply", "-f", str(path), "--wait")
    yield lab


def node_addresses(lab: Lab, node: str) -> dict[str, str]:
    """Every IPv4 address of the node but loopback, by interface."""
    out = in_ns(host_ns(lab, node), "ip", "-j", "-4", "addr", "show").stdout
    return {link["ifname"]: a["local"] for link in json.loads(out)
            for a in link.get("addr_info", []) if not a["local"].startswith("127.")}


@pytest.fixture(scope="module")
def targets(lab: Lab) -> Iterator[list[str]]:
    """ADDRESS:PORT for every node port on every address of h1, each with a listener."""
    addrs = node_addresses(lab, "h1")
    names = sorted(addrs)
    # The underlay, the default network, berth-gwbridge (the overlay's way to the node)
    # and the bridge network: four addresses the containers could aim at.
    assert "eth0" in names and "berth0" in names, names
    assert len([n for n in names if n.startswith("bb-")]) == 2, names
    found = [f"{addrs[n]}:{port}" for n in names for port in NODE_PORTS]
    proc = listening(host_ns(lab, "h1"), found)
    try:
        # Only the agent's own ports on the underlay are taken: by the agent itself.
        ip = host_ip(lab, "h1")
        assert taken_until_ready(proc) == [f"{ip}:7071", f"{ip}:9102"]
        yield found
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def listening(ns: str, found: list[str]) -> subprocess.Popen[str]:
    """tests/whoami.py listening on ``found`` in ``ns``; ready once it says so."""
    return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", sys.executable, WHOAMI,
                             "listen", *found], stdout=subprocess.PIPE, text=True)


def taken_until_ready(proc: subprocess.Popen[str]) -> list[str]:
    """The addresses ``listen`` found taken (by their daemons), read until it is ready."""
    assert proc.stdout is not None
    taken: list[str] = []
    for line in proc.stdout:
        if line.strip() == "ready":
            return sorted(taken)
        taken.append(line.split()[-1])
    raise AssertionError("tests/whoami.py listen ended before it was ready")


@pytest.fixture(scope="module")
def peer_targets(lab: Lab) -> Iterator[tuple[list[str], str]]:
    """Every node port on h2's underlay address (each with a listener), the lab's etcd and
    controller; and one more port on h2 that nothing closes, the control."""
    h2 = host_ip(lab, "h2")
    found = [f"{h2}:{port}" for port in NODE_PORTS]
    control = f"{h2}:8088"
    proc = listening(host_ns(lab, "h2"), [*found, control])
    try:
        assert taken_until_ready(proc) == [f"{h2}:7071", f"{h2}:9102"]
        etcd = str(lab.info["etcd"]).rpartition("://")[2]
        yield [*found, etcd, lab.controller], control
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


PROBE = ('for t in "$@"; do (timeout 5 nc -w 2 "${t%:*}" "${t##*:}" </dev/null '
         '>/dev/null 2>&1; echo "$t $?") & done; wait')


def open_from(lab: Lab, ctr: str, targets: list[str], *, agent_down: bool = False
              ) -> set[str]:
    """The targets a TCP connect from inside ``ctr`` reaches (all tried at once).

    busybox nc exits 1 when it cannot connect; a connect that succeeded ends in 0 (the
    listener closed) or in timeout's 124 (the agent's gRPC keeps it open). Without an
    agent there is no exec: the node's busybox runs in the container's netns instead."""
    if agent_down:
        pid = str(lab.containers()[ctr]["pid"])
        out = subprocess.run(["nsenter", "-t", pid, "-n", "busybox", "sh", "-c", PROBE,
                              "probe", *targets], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    else:
        out = lab.ctl("exec", ctr, "--", "sh", "-c", PROBE, "probe", *targets,
                      timeout=60).stdout
    results = dict(line.split() for line in out.splitlines() if line.strip())
    assert sorted(results) == sorted(targets), out
    return {t for t, rc in results.items() if rc != "1"}


def test_every_node_port_answers_on_the_node_itself(lab: Lab, targets: list[str]) -> None:
    out = in_ns(host_ns(lab, "h1"), sys.executable, WHOAMI, "scan", *targets).stdout
    assert sorted(out.split()) == sorted(targets)


def test_overlay_container_reaches_its_node_through_the_gateway_bridge(lab: Lab) -> None:
    assert set(lab.containers()["ov-1"]["networks"]) == {"over", "berth-gwbridge"}


@pytest.mark.parametrize("ctr", list(CONTAINERS.values()), ids=list(CONTAINERS))
def test_no_node_port_is_reachable_from_a_container(lab: Lab, targets: list[str],
                                                    ctr: str) -> None:
    assert open_from(lab, ctr, targets) == set()


@pytest.mark.parametrize("ctr", ["ov-1", "br-1", "plain-1"], ids=["overlay", "bridge",
                                                                   "default"])
def test_no_berth_port_of_another_host_is_reachable_through_the_node(
        lab: Lab, peer_targets: tuple[list[str], str], ctr: str) -> None:
    closed, control = peer_targets
    assert open_from(lab, ctr, [*closed, control]) == {control}


@pytest.mark.parametrize("ctr", ["ov-1", "br-1", "plain-1"], ids=["overlay", "bridge",
                                                                   "default"])
def test_published_port_and_ping_still_work(lab: Lab, ctr: str) -> None:
    """The control: the same path to the node still carries what containers may use."""
    published = f"{host_ip(lab, 'h1')}:8080"
    assert open_from(lab, ctr, [published]) == {published}
    assert pings(lab, ctr, host_ip(lab, "h1"))


def test_embedded_dns_still_answers(lab: Lab) -> None:
    assert resolve(lab, "br-1", "br", "10.65.0.0/24") == [ip_on(lab, "br-1", "local")]
    assert resolve(lab, "ov-1", "ov", "10.64.0.0/24") == [ip_on(lab, "ov-1", "over")]


def test_publishing_a_node_port_is_refused(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "grab.yaml"
    path.write_text(GRAB)
    lab.ctl("apply", "-f", str(path))
    try:
        wait_until("grab-1 refused", lambda: "host port 7071/tcp is one of this node's "
                   "berth or etcd ports" in str(lab.containers().get("grab-1", {}).get("error")))
        assert lab.containers()["grab-1"]["state"] != "running"
    finally:
        lab.ctl("delete", "-f", str(path))


def test_rules_outlive_the_agent_and_a_restart_adds_none(lab: Lab, targets: list[str]) -> None:
    def ruleset() -> str:
        return in_ns(host_ns(lab, "h1"), "nft", "list", "table", "inet", "berth").stdout

    before = ruleset()
    assert before.count("jump node-ports.filter-in") == 1
    h1 = next(h for h in lab.info["hosts"] if h["name"] == "h1")
    os.kill(int(h1["agent_pid"]), signal.SIGKILL)
    # No agent: the containers run on, and so do the rules.
    assert open_from(lab, "br-1", targets, agent_down=True) == set()
    lab.ctl("lab", "up", "--name", lab.name, "--hosts", "3")
    lab.refresh()
    assert ruleset() == before
    assert open_from(lab, "br-1", targets) == set()
