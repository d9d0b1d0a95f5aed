"""Issue 3 on a 3-host lab: overlay networking, IPAM and DNS by name across hosts."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Lab, wait_until

pytestmark = pytest.mark.e2e

NETWORK = """\
apiVersion: berth/v1
kind: Network
metadata: {{name: {net}}}
spec: {{driver: overlay, subnet: {subnet}}}
---
apiVersion: berth/v1
kind: Service
metadata: {{name: {svc}}}
spec:
  replicas: {replicas}
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [{net}]
"""


def manifest(tmp: Path, net: str, subnet: str, svc: str, replicas: int) -> str:
    path = tmp / f"{svc}-{replicas}.yaml"
    path.write_text(NETWORK.format(net=net, subnet=subnet, svc=svc, replicas=replicas))
    return str(path)


def resolve(lab: Lab, client: str, name: str, subnet: str) -> list[str]:
    """Addresses `nslookup` inside CLIENT returns for NAME, within SUBNET (not the server's)."""
    proc = lab.ctl("exec", client, "--", "nslookup", name, check=False)
    out = proc.stdout
    # No answer must come from the resolver itself, not from a broken exec.
    if proc.returncode != 0 and "can't find" not in out + proc.stderr:
        raise AssertionError(f"nslookup {name} in {client} failed: {out}{proc.stderr}")
    net = ipaddress.ip_network(subnet)
    found = re.findall(r"Address:?\s+(\d+\.\d+\.\d+\.\d+)", out)
    return sorted(ip for ip in found if ipaddress.ip_address(ip) in net)


def pings(lab: Lab, src: str, dst: str) -> bool:
    return lab.ctl("exec", src, "--", "ping", "-c1", "-W2", dst, check=False).returncode == 0


def reaches(lab: Lab, src: str, dst: str) -> None:
    """SRC pings DST within 30 s: a new peer's name and neighbour entries reach other
    hosts shortly after ``apply --wait`` returns (it waits for running, not for DNS
    everywhere), and a loaded machine can stretch that past one ping's timeout."""
    wait_until(f"{src} pings {dst}", lambda: pings(lab, src, dst), timeout=30)


@pytest.fixture(scope="module")
def lab(
    lab_factory: Callable[[int], Lab], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    lab = lab_factory(3)
    tmp = tmp_path_factory.mktemp("m")
    lab.ctl("apply", "-f", manifest(tmp, "appnet", "10.42.0.0/24", "web", 3), "--wait")
    lab.ctl("apply", "-f", manifest(tmp, "othernet", "10.43.0.0/24", "db", 2), "--wait")
    yield lab


WEB = ("web-1", "web-2", "web-3")


def test_one_replica_per_host(lab: Lab) -> None:
    rows = lab.containers()
    assert sorted(rows[n]["node"] for n in WEB) == ["h1", "h2", "h3"]
    ips = [rows[n]["networks"]["appnet"]["ip"] for n in WEB]
    assert len(set(ips)) == 3
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.42.0.0/24") for ip in ips)
    assert "10.42.0.1" not in ips  # the gateway is reserved


def test_get_networks_and_nodes(lab: Lab) -> None:
    nets = {r["name"]: r for r in _json(lab, "networks")}
    assert nets["appnet"]["driver"] == "overlay" and nets["appnet"]["subnet"] == "10.42.0.0/24"
    assert nets["appnet"]["vni"] and nets["appnet"]["vni"] != nets["othernet"]["vni"]
    assert nets["appnet"]["endpoints"] == 3
    nodes = {r["name"]: r for r in _json(lab, "nodes")}
    assert {n: nodes[n]["address"] for n in nodes} == {
        h["name"]: h["underlay_ip"] for h in lab.info["hosts"]
    }


def _json(lab: Lab, kind: str) -> list[dict[str, object]]:
    import json

    return list(json.loads(lab.ctl("get", kind, "-o", "json").stdout))


@pytest.mark.parametrize(
    ("src", "dst"),
    list(itertools.permutations(WEB, 2)),
    ids=[f"{a}-to-{b}" for a, b in itertools.permutations(WEB, 2)],
)
def test_ping_by_name_across_hosts(lab: Lab, src: str, dst: str) -> None:
    assert pings(lab, src, dst)


def test_service_name_returns_every_replica(lab: Lab) -> None:
    rows = lab.containers()
    want = sorted(rows[n]["networks"]["appnet"]["ip"] for n in WEB)
    assert resolve(lab, "web-1", "web", "10.42.0.0/24") == want


def test_unknown_name_fails_fast_not_hangs(lab: Lab) -> None:
    proc = lab.ctl(
        "exec", "web-1", "--", "nslookup", "no-such-name.example", check=False, timeout=30
    )
    # The embedded resolver answered (SERVFAIL: the lab has no upstream); a resolver
    # that hung would make nslookup report a timeout instead.
    assert proc.returncode == 1
    assert "SERVFAIL" in proc.stdout, proc.stdout


def test_networks_are_isolated(lab: Lab) -> None:
    rows = lab.containers()
    assert resolve(lab, "db-1", "web-2", "10.0.0.0/8") == []
    assert resolve(lab, "web-2", "db-1", "10.0.0.0/8") == []
    assert resolve(lab, "db-1", "db-2", "10.43.0.0/24") == [
        rows["db-2"]["networks"]["othernet"]["ip"]
    ]
    assert not pings(lab, "db-1", rows["web-2"]["networks"]["appnet"]["ip"])
    assert not pings(lab, "web-2", rows["db-1"]["networks"]["othernet"]["ip"])


async def _ipam_and_assignments(lab: Lab) -> tuple[list[tuple[str, str]], dict[str, str]]:
    from berth.records import ContainerSpec

    async with lab.etcd() as etcd:
        ipam = await etcd.get_prefix("/berth/ipam/")
        assigned = await etcd.get_prefix("/berth/assign/")
    # <net>/<ip>, or <net>/<node>/<ip> for node-local networks (the gateway bridge).
    allocations = [(m.key.removeprefix("/berth/ipam/"), v.decode()) for v, m in ipam.items]
    by_container = {}
    for value, _meta in assigned.items:
        spec = ContainerSpec.loads(value)
        for att in spec.networks:
            node = f"{spec.node}/" if att.driver == "bridge" else ""
            by_container[f"{att.network}/{node}{att.ip}"] = spec.name
    return allocations, by_container


def test_agent_restart_keeps_pings_and_leaks_nothing(lab: Lab) -> None:
    before = lab.containers()
    h2 = next(h for h in lab.info["hosts"] if h["name"] == "h2")
    os.kill(int(h2["agent_pid"]), signal.SIGKILL)
    lab.ctl("lab", "up", "--name", lab.name, "--hosts", "3")
    lab.refresh()
    after = lab.containers()
    assert {n: after[n]["pid"] for n in WEB} == {n: before[n]["pid"] for n in WEB}
    for src, dst in itertools.permutations(WEB, 2):
        reaches(lab, src, dst)
    allocations, by_container = asyncio.run(_ipam_and_assignments(lab))
    ips = [key for key, _ in allocations]
    assert len(ips) == len(set(ips))
    # Every allocation belongs to an assigned container and vice versa: nothing leaked.
    assert dict(allocations) == by_container


def test_deleted_replica_stops_resolving_elsewhere(lab: Lab, tmp_path: Path) -> None:
    rows = lab.containers()
    assert rows["web-3"]["node"] != rows["web-1"]["node"]
    assert resolve(lab, "web-1", "web-3", "10.42.0.0/24") == [
        rows["web-3"]["networks"]["appnet"]["ip"]
    ]
    lab.ctl("apply", "-f", manifest(tmp_path, "appnet", "10.42.0.0/24", "web", 2), "--wait")
    wait_until("web-3 gone", lambda: "web-3" not in lab.containers())
    wait_until(
        "web-3 stops resolving", lambda: resolve(lab, "web-1", "web-3", "10.42.0.0/24") == []
    )
    assert len(resolve(lab, "web-1", "web", "10.42.0.0/24")) == 2
    allocations, by_container = asyncio.run(_ipam_and_assignments(lab))
    assert dict(allocations) == by_container


def test_container_files_point_at_embedded_dns(lab: Lab) -> None:
    resolv = lab.ctl("exec", "web-1", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in resolv.splitlines()
    ip = lab.containers()["web-1"]["networks"]["appnet"]["ip"]
    hosts = lab.ctl("exec", "web-1", "--", "cat", "/etc/hosts").stdout
    assert f"{ip}\tweb-1" in hosts


def test_stopped_container_stops_resolving(lab: Lab) -> None:
    rows = lab.containers()
    db2 = rows["db-2"]
    assert resolve(lab, "db-1", "db-2", "10.43.0.0/24") == [db2["networks"]["othernet"]["ip"]]
    os.kill(db2["pid"], signal.SIGKILL)
    wait_until("db-2 exited", lambda: lab.containers()["db-2"]["state"] == "exited")
    assert lab.containers()["db-2"]["exit_code"] == 137
    wait_until("db-2 stops resolving", lambda: resolve(lab, "db-1", "db-2", "10.43.0.0/24") == [])


def _overlay_devices(lab: Lab) -> list[str]:
    import subprocess

    found = []
    for host in lab.info["hosts"]:
        out = subprocess.run(
            ["ip", "-n", host["netns"], "-o", "link", "show"], capture_output=True, text=True
        ).stdout
        found += [f"{host['name']}:{m}" for m in re.findall(r"^\d+: (vx-\d+|bo-\d+)", out, re.M)]
    return found


def test_deleting_network_removes_it_from_every_host(lab: Lab, tmp_path: Path) -> None:
    vni = {r["name"]: r["vni"] for r in _json(lab, "networks")}["othernet"]
    assert any(d.endswith(f"vx-{vni}") for d in _overlay_devices(lab))
    path = manifest(tmp_path, "othernet", "10.43.0.0/24", "db", 2)
    lab.ctl("delete", "-f", path)
    wait_until(
        "othernet devices gone",
        lambda: not [d for d in _overlay_devices(lab) if d.endswith(f"-{vni}")],
    )
    assert "othernet" not in {r["name"] for r in _json(lab, "networks")}
    assert any(
        d.endswith("vx-" + str({r["name"]: r["vni"] for r in _json(lab, "networks")}["appnet"]))
        for d in _overlay_devices(lab)
    )


TWIN = """\
apiVersion: berth/v1
kind: Network
metadata: {name: twin}
spec: {driver: overlay, subnet: 10.42.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: tw}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: {twin: {ip: 10.42.0.200}}
  placement: {node: NODE}
"""

SIDE = """\
apiVersion: berth/v1
kind: Network
metadata: {name: side}
spec: {driver: overlay, subnet: 10.45.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: sd}
spec: {image: busybox:latest, command: [sleep, "3600"], networks: [side]}
---
apiVersion: berth/v1
kind: Service
metadata: {name: dual}
spec: {image: busybox:latest, command: [sleep, "3600"], networks: [appnet, side]}
"""


def test_same_subnet_on_two_networks_stays_apart(lab: Lab, tmp_path: Path) -> None:
    """Overlapping subnets prove isolation is the VNI's doing, not routing's."""
    rows = lab.containers()
    web2 = rows["web-2"]
    other = next(h["name"] for h in lab.info["hosts"] if h["name"] != web2["node"])
    path = tmp_path / "twin.yaml"
    path.write_text(TWIN.replace("NODE", other))
    lab.ctl("apply", "-f", str(path), "--wait")
    web2_ip = web2["networks"]["appnet"]["ip"]
    # First the address is up and reachable on its own network, so the refusals
    # below cannot pass merely because tw-1 is not ready yet.
    reaches(lab, "tw-1", "10.42.0.200")
    assert not pings(lab, "tw-1", web2_ip)
    assert not pings(lab, "web-2", "10.42.0.200")
    lab.ctl("delete", "-f", str(path))
    wait_until("twin removed", lambda: "twin" not in {r["name"] for r in _json(lab, "networks")})


def test_container_on_two_networks(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "side.yaml"
    path.write_text(SIDE)
    lab.ctl("apply", "-f", str(path), "--wait")
    ifaces = lab.ctl("exec", "dual-1", "--", "ls", "/sys/class/net").stdout.split()
    assert {"eth0", "eth1"} <= set(ifaces)
    reaches(lab, "dual-1", "web-2")
    reaches(lab, "dual-1", "sd-1")
    assert resolve(lab, "dual-1", "sd-1", "10.45.0.0/24") != []
    # Scope: sd-1 shares only "side" with dual-1, so it sees dual-1 but not web-2.
    assert resolve(lab, "sd-1", "dual-1", "10.45.0.0/24") != []
    assert resolve(lab, "sd-1", "web-2", "10.0.0.0/8") == []
    lab.ctl("delete", "-f", str(path))


MOVER = """\
apiVersion: berth/v1
kind: Service
metadata: {name: mover}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [appnet]
  placement: {node: NODE}
"""


def test_container_moved_to_another_node_is_reachable(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "mover.yaml"
    path.write_text(MOVER.replace("NODE", "h1"))
    lab.ctl("apply", "-f", str(path), "--wait")
    path.write_text(MOVER.replace("NODE", "h2"))
    lab.ctl("apply", "-f", str(path))

    def moved() -> bool:
        row = lab.containers().get("mover-1", {})
        return row.get("node") == "h2" and row.get("state") == "running"

    wait_until("mover-1 running on h2", moved)
    # h1 stops its copy gracefully (SIGTERM, grace, SIGKILL), then deletes it. Wait until
    # it has: h1 finishing its removal must not erase h2's records.
    h1_dir = Path(next(h["state_dir"] for h in lab.info["hosts"] if h["name"] == "h1"))
    wait_until("h1 removed its mover-1", lambda: not (h1_dir / "containers" / "mover-1").exists(),
               timeout=60)
    row = lab.containers()["mover-1"]
    assert (row["node"], row["state"]) == ("h2", "running")
    assert resolve(lab, "web-1", "mover-1", "10.42.0.0/24") == [row["networks"]["appnet"]["ip"]]
    reaches(lab, "web-1", "mover-1")
    lab.ctl("delete", "-f", str(path))


CROWD = """\
apiVersion: berth/v1
kind: Network
metadata: {name: NET}
spec: {driver: overlay, subnet: 10.77.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: SVC}
spec:
  replicas: REPLICAS
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [NET]
"""


def _crowd(tmp: Path, net: str, svc: str, replicas: int) -> str:
    path = tmp / f"{net}.yaml"
    text = CROWD.replace("NET", net).replace("SVC", svc).replace("REPLICAS", str(replicas))
    path.write_text(text)
    return str(path)


def test_many_replicas_per_host_then_vni_reuse(lab: Lab, tmp_path: Path) -> None:
    """Several containers join one new network on one host at once; after the network
    goes, nothing of it comes back, and a new network that reuses its VNI works."""
    first = _crowd(tmp_path, "crowd", "many", 7)
    lab.ctl("apply", "-f", first, "--wait")
    vni = {r["name"]: r["vni"] for r in _json(lab, "networks")}["crowd"]
    lab.ctl("delete", "-f", first)
    wait_until(
        "crowd devices gone",
        lambda: not [d for d in _overlay_devices(lab) if d.endswith(f"-{vni}")],
    )
    time.sleep(3)  # a leaked host task would rebuild the devices on its next wake-up
    assert not [d for d in _overlay_devices(lab) if d.endswith(f"-{vni}")]
    second = _crowd(tmp_path, "again", "pair", 3)
    lab.ctl("apply", "-f", second, "--wait")
    assert {r["name"]: r["vni"] for r in _json(lab, "networks")}["again"] == vni
    for _ in range(3):
        for src, dst in itertools.permutations(("pair-1", "pair-2", "pair-3"), 2):
            reaches(lab, src, dst)
    lab.ctl("delete", "-f", second)
