"""The overlay driver end to end on real netlink: two simulated hosts, one container each.

Topology, all in fresh namespaces named bt-ovl-<random>-*: a "switch" netns with a bridge,
two host netns with eth0 on it (the underlay, 10.250.<x>.11 and .12), and one container
netns per host. Each host runs an OverlayHost and an OverlayDriver targeted at its netns,
as the agent would inside it. The CNI sequence ADD, CHECK, DEL, DEL runs on both hosts, and
ping between the containers is the behaviour a user sees.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netplugins.contract import (
    Attachment,
    AttachResult,
    ContainerId,
    HostContext,
    NetConf,
    Peer,
    mac_from_ip,
)
from netplugins.errors import CheckFailedError, KernelError
from netplugins.netlink import discover_underlay
from netplugins.overlay.driver import OverlayDriver
from netplugins.overlay.host import OverlayHost
from netplugins.registry import lookup

pytestmark = pytest.mark.integration

VNI = 4242
NET = NetConf(name="appnet", driver="overlay", subnet="10.42.0.0/24",
                  gateway="10.42.0.1", vni=VNI)
BUSYBOX = "/bin/busybox"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class Lab:
    prefix: str
    underlay_net: str          # e.g. 10.250.17

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    def host_ip(self, n: int) -> str:
        return f"{self.underlay_net}.1{n}"


@pytest.fixture
def lab() -> Iterator[Lab]:
    """Switch + two hosts + two containers; every namespace is deleted in finally."""
    lab = Lab(f"bt-ovl-{secrets.token_hex(3)}", f"10.250.{secrets.randbelow(200) + 20}")
    made: list[str] = []
    try:
        for role in ("sw", "h1", "h2", "c1", "c2"):
            sh("ip", "netns", "add", lab.ns(role))
            made.append(lab.ns(role))
        sw = lab.ns("sw")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for n in (1, 2):
            host = lab.ns(f"h{n}")
            sh("ip", "-n", sw, "link", "add", f"p{n}", "type", "veth",
               "peer", "name", "eth0", "netns", host)
            sh("ip", "-n", sw, "link", "set", f"p{n}", "master", "br0", "up")
            sh("ip", "-n", host, "addr", "add", f"{lab.host_ip(n)}/24", "dev", "eth0")
            sh("ip", "-n", host, "link", "set", "eth0", "up")
            sh("ip", "-n", host, "link", "set", "lo", "up")
        yield lab
    finally:
        for name in reversed(made):
            sh("ip", "netns", "del", name, check=False)


def ping(lab: Lab, container: str, ip: str) -> bool:
    done = sh("nsenter", f"--net={lab.path(container)}", BUSYBOX, "ping", "-c1", "-W2", ip,
              check=False)
    return done.returncode == 0


def links(lab: Lab, role: str) -> list[str]:
    out = json.loads(sh("ip", "-j", "-n", lab.ns(role), "link", "show").stdout)
    return [link["ifname"] for link in out]


def fdb_lines(lab: Lab, role: str) -> str:
    """The VXLAN device's own entries (with a dst), not the bridge's learned ones."""
    out = sh("bridge", "-n", lab.ns(role), "fdb", "show", "dev", f"vx-{VNI}").stdout
    return "\n".join(line for line in out.splitlines() if " dst " in line)


def neigh_lines(lab: Lab, role: str) -> str:
    return sh("ip", "-n", lab.ns(role), "neigh", "show", "dev", f"vx-{VNI}").stdout


def attachment(lab: Lab, n: int) -> Attachment:
    ip = f"10.42.0.{10 + n}"
    return Attachment(
        container_id=ContainerId(f"ctr{n}-{lab.prefix}"), container_name=f"web-{n}",
        netns=lab.path(f"c{n}"), ip=ip, prefixlen=24, mac=mac_from_ip(ip), gateway="10.42.0.1",
    )


class MemoryPeers:
    """An in-memory PeerSource: what the agent's etcd adapter provides."""

    def __init__(self, peers: frozenset[Peer]) -> None:
        self.peers = peers
        self.changed = asyncio.Event()
        self.acks: asyncio.Queue[frozenset[Peer]] = asyncio.Queue()

    async def snapshot(self) -> frozenset[Peer]:
        self.changed.clear()
        return self.peers

    async def wait_changed(self) -> None:
        await self.changed.wait()

    async def programmed(self, peers: frozenset[Peer]) -> None:
        await self.acks.put(peers)

    def set(self, peers: frozenset[Peer]) -> None:
        self.peers = peers
        self.changed.set()


async def test_overlay_cni_sequence_and_resync(lab: Lab) -> None:
    ctx = {}
    for n in (1, 2):
        underlay = await discover_underlay(lab.host_ip(n), netns=lab.path(f"h{n}"))
        assert (underlay.ifname, underlay.mtu) == ("eth0", 1500)
        ctx[n] = HostContext(underlay, host_netns=lab.path(f"h{n}"))
    # The agent builds drivers through the registry; the host is built directly here
    # because the test also calls OverlayHost.sync, which the NetworkHost protocol lacks.
    hosts = {n: OverlayHost(NET, ctx[n], resync_interval=60.0) for n in (1, 2)}
    drivers = {n: lookup("overlay").make_driver(ctx[n]) for n in (1, 2)}
    atts = {n: attachment(lab, n) for n in (1, 2)}
    peers = frozenset(Peer(a.ip, a.mac, ctx[n].underlay.ip) for n, a in atts.items())

    # ADD on both hosts, then let each host's run loop program its remote peer.
    results: dict[int, AttachResult] = {}
    for n in (1, 2):
        await hosts[n].ensure()
        results[n] = await drivers[n].add(atts[n], NET)
        assert AttachResult.from_json(results[n].to_json()) == results[n]
    assert results[1].mtu == 1450 and results[1].bridge == f"bo-{VNI}"
    eth0 = json.loads(sh("ip", "-j", "-n", lab.ns("c1"), "link", "show", "eth0").stdout)[0]
    assert (eth0["mtu"], eth0["address"]) == (1450, atts[1].mac)
    sources = {n: MemoryPeers(peers) for n in (1, 2)}
    tasks = [asyncio.create_task(hosts[n].run(sources[n])) for n in (1, 2)]
    try:
        for n in (1, 2):
            async with asyncio.timeout(10):
                acked = await sources[n].acks.get()
            assert acked == {p for p in peers if p.host_ip != ctx[n].underlay.ip}
        assert ping(lab, "c1", atts[2].ip), "container 1 cannot reach container 2 over VXLAN"
        assert ping(lab, "c2", atts[1].ip)
        for n in (1, 2):
            await drivers[n].check(atts[n], NET, results[n])

        # A peer that leaves the source loses its entries; ping fails, as it must.
        sources[1].set(frozenset(p for p in peers if p.ip != atts[2].ip))
        async with asyncio.timeout(10):
            await sources[1].acks.get()
        assert atts[2].ip not in neigh_lines(lab, "h1")
        assert atts[2].mac not in fdb_lines(lab, "h1")
        assert not ping(lab, "c1", atts[2].ip)
        sources[1].set(peers)
        async with asyncio.timeout(10):
            await sources[1].acks.get()
        assert ping(lab, "c1", atts[2].ip)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Resync repairs a deleted FDB entry.
    sh("bridge", "-n", lab.ns("h1"), "fdb", "del", atts[2].mac, "dev", f"vx-{VNI}",
       "dst", ctx[2].underlay.ip)
    assert atts[2].mac not in fdb_lines(lab, "h1")
    report = await hosts[1].sync(peers)
    assert [f.mac for f in report.plan.fdb_replace] == [atts[2].mac]
    assert f"{atts[2].mac} dst {ctx[2].underlay.ip}" in fdb_lines(lab, "h1")

    # A deleted VXLAN device fails CHECK with a clear reason; sync recreates it.
    sh("ip", "-n", lab.ns("h1"), "link", "del", f"vx-{VNI}")
    with pytest.raises(CheckFailedError, match=f"VXLAN device vx-{VNI} is missing"):
        await drivers[1].check(atts[1], NET, results[1])
    assert not ping(lab, "c1", atts[2].ip)
    report = await hosts[1].sync(peers)
    assert report.recreated == (f"vx-{VNI}",)
    await drivers[1].check(atts[1], NET, results[1])
    assert ping(lab, "c1", atts[2].ip)

    # A deleted bridge is recreated and takes the container's veth back.
    sh("ip", "-n", lab.ns("h2"), "link", "del", f"bo-{VNI}")
    with pytest.raises(CheckFailedError, match=f"bridge bo-{VNI} is missing"):
        await drivers[2].check(atts[2], NET, results[2])
    report = await hosts[2].sync(peers)
    host_veth = results[2].interfaces[0].name
    assert report.recreated == (f"bo-{VNI}", host_veth)
    await drivers[2].check(atts[2], NET, results[2])
    assert ping(lab, "c1", atts[2].ip)

    # DEL, DEL again, DEL without the stored result: no errors, veth gone, CHECK fails.
    for n in (1, 2):
        await drivers[n].delete(atts[n], NET, results[n])
        await drivers[n].delete(atts[n], NET, results[n])
        await drivers[n].delete(atts[n], NET, None)
        assert atts[n].ifname not in links(lab, f"c{n}")
        with pytest.raises(CheckFailedError, match="is missing"):
            await drivers[n].check(atts[n], NET, results[n])
        await hosts[n].teardown()
        await hosts[n].teardown()
        left = [i for i in links(lab, f"h{n}") if i.startswith(("bo-", "vx-", "vo"))]
        assert left == []


async def test_add_undoes_partial_work(lab: Lab) -> None:
    """An ADD that fails half-way (the address is invalid for the kernel) leaves no veth."""
    underlay = await discover_underlay(lab.host_ip(1), netns=lab.path("h1"))
    ctx = HostContext(underlay, host_netns=lab.path("h1"))
    driver = OverlayDriver(ctx)
    bad = Attachment(
        container_id=ContainerId("bad"), container_name="bad", netns=lab.path("c1"),
        ip="10.42.0.99", prefixlen=99, mac=mac_from_ip("10.42.0.99"),
    )
    with pytest.raises(KernelError, match=re.escape("address 10.42.0.99/99 on eth0")):
        await driver.add(bad, NET)
    assert not [i for i in links(lab, "h1") if i.startswith("vo")]
    assert links(lab, "c1") == ["lo"]
    await OverlayHost(NET, ctx).teardown()


async def test_overlay_works_where_docker_set_forward_to_drop(lab: Lab) -> None:
    """With br_netfilter, bridged overlay traffic crosses iptables' FORWARD chain, whose
    policy Docker sets to DROP; the overlay host accepts its own bridge there, and takes
    exactly that accept away again on teardown."""
    before = {}
    for n in (1, 2):
        host = lab.ns(f"h{n}")
        sh("ip", "netns", "exec", host, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        sh("ip", "netns", "exec", host, "iptables", "-P", "FORWARD", "DROP")
        before[n] = sh("ip", "netns", "exec", host, "iptables", "-S").stdout
    ctx = {n: HostContext(await discover_underlay(lab.host_ip(n), netns=lab.path(f"h{n}")),
                          host_netns=lab.path(f"h{n}")) for n in (1, 2)}
    hosts = {n: OverlayHost(NET, ctx[n], resync_interval=60.0) for n in (1, 2)}
    atts = {n: attachment(lab, n) for n in (1, 2)}
    peers = frozenset(Peer(a.ip, a.mac, ctx[n].underlay.ip) for n, a in atts.items())
    results = {}
    for n in (1, 2):
        await hosts[n].ensure()
        results[n] = await OverlayDriver(ctx[n]).add(atts[n], NET)
        await hosts[n].sync(peers)
    assert f"berth:bo-{VNI}" in sh("ip", "netns", "exec", lab.ns("h1"), "iptables", "-S").stdout
    assert ping(lab, "c1", atts[2].ip), "FORWARD DROP swallowed the overlay's bridged traffic"
    for n in (1, 2):
        await OverlayDriver(ctx[n]).delete(atts[n], NET, results[n])
        await hosts[n].teardown()
        assert sh("ip", "netns", "exec", lab.ns(f"h{n}"), "iptables", "-S").stdout == before[n]
