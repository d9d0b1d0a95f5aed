"""The macvlan driver end to end on real netlink: three simulated hosts on one LAN.

Topology, all in fresh namespaces named bt-mvl-<random>-*: a "switch" netns whose bridge
br0 holds the LAN's gateway address (.1), three host netns whose eth0 is a veth on br0
(.11, .12, .13), and container netns c1..c4. Each host runs a MacvlanHost and a
MacvlanDriver targeted at its netns, as the agent would inside it. What a user sees is
ping between containers across hosts, the devices ``ip link`` lists, and the errors.
Every namespace is deleted in ``finally``, so nothing outlives a failing test.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

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
from netplugins.errors import (
    AttachConflictError,
    CheckFailedError,
    KernelError,
    NetworkConfigError,
    ParentMissingError,
    ParentUnavailableError,
    ParentUnusableError,
    VlanUnsupportedError,
)
from netplugins.macvlan.cleanup import remove_stale_networks as remove_stale_macvlans
from netplugins.macvlan.config import anchor_name
from netplugins.macvlan.driver import MacvlanDriver
from netplugins.macvlan.host import MacvlanHost
from netplugins.netlink import discover_underlay
from netplugins.registry import lookup
from tests import needs

pytestmark = pytest.mark.integration

BUSYBOX = "/bin/busybox"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Lan:
    prefix: str
    net: str                   # e.g. 10.249.17: the LAN is <net>.0/24
    made: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    def ip(self, last: int) -> str:
        return f"{self.net}.{last}"

    @property
    def gateway(self) -> str:
        return self.ip(1)

    def add_netns(self, role: str) -> None:
        sh("ip", "netns", "add", self.ns(role))
        self.made.append(self.ns(role))

    def plug(self, host: str, ifname: str, port: str) -> None:
        """A veth ``ifname`` in ``host`` whose peer ``port`` is on the switch's br0."""
        sw = self.ns("sw")
        sh("ip", "-n", sw, "link", "add", port, "type", "veth",
           "peer", "name", ifname, "netns", self.ns(host))
        sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", self.ns(host), "link", "set", ifname, "up")


@pytest.fixture
def lan() -> Iterator[Lan]:
    needs.root()
    lan = Lan(f"bt-mvl-{secrets.token_hex(3)}", f"10.249.{secrets.randbelow(200) + 20}")
    try:
        for role in ("sw", "h1", "h2", "h3", "c1", "c2", "c3", "c4"):
            lan.add_netns(role)
        sw = lan.ns("sw")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "addr", "add", f"{lan.gateway}/24", "dev", "br0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for n in (1, 2, 3):
            host = f"h{n}"
            lan.plug(host, "eth0", f"p{n}")
            sh("ip", "-n", lan.ns(host), "addr", "add", f"{lan.ip(10 + n)}/24", "dev", "eth0")
            sh("ip", "-n", lan.ns(host), "link", "set", "lo", "up")
        yield lan
    finally:
        for name in reversed(lan.made):
            sh("ip", "netns", "del", name, check=False)


def net(name: str = "lan", parent: str = "eth0", mode: str | None = None,
        mtu: int = 0, subnet: str = "") -> NetConf:
    options = {"parent": parent} | ({"mode": mode} if mode else {})
    return NetConf(name=name, driver="macvlan", subnet=subnet, gateway="", mtu=mtu,
                   options=options)


def lan_net(lan: Lan, **kw: str | int) -> NetConf:
    conf = net(**kw)  # type: ignore[arg-type]
    return replace(conf, subnet=f"{lan.net}.0/24", gateway=lan.gateway)


def attachment(lan: Lan, container: str, last: int, *, default_route: bool = False) -> Attachment:
    ip = lan.ip(last)
    return Attachment(
        container_id=ContainerId(f"{container}-{lan.prefix}"), container_name=f"web-{container}",
        netns=lan.path(container), ip=ip, prefixlen=24, mac=mac_from_ip(ip),
        gateway=lan.gateway, default_route=default_route,
    )


async def context(lan: Lan, host: str) -> HostContext:
    n = int(host[1:])
    underlay = await discover_underlay(lan.ip(10 + n), netns=lan.path(host))
    return HostContext(underlay, host_netns=lan.path(host))


def ping(lan: Lan, container: str, ip: str) -> bool:
    done = sh("nsenter", f"--net={lan.path(container)}", BUSYBOX, "ping", "-c1", "-W2", ip,
              check=False)
    return done.returncode == 0


def links(lan: Lan, role: str) -> dict[str, dict[str, Any]]:
    out = json.loads(sh("ip", "-d", "-j", "-n", lan.ns(role), "link", "show").stdout)
    return {link["ifname"]: link for link in out}


class StaticPeers:
    """A PeerSource that never changes: what the agent's etcd adapter gives a quiet network."""

    def __init__(self, peers: frozenset[Peer]) -> None:
        self.peers = peers
        self.acks: asyncio.Queue[frozenset[Peer]] = asyncio.Queue()

    async def snapshot(self) -> frozenset[Peer]:
        return self.peers

    async def wait_changed(self) -> None:
        await asyncio.Event().wait()

    async def programmed(self, peers: frozenset[Peer]) -> None:
        await self.acks.put(peers)


async def test_macvlan_cni_sequence_across_hosts(lan: Lan) -> None:
    netconf = lan_net(lan)
    ctx = {h: await context(lan, h) for h in ("h1", "h2", "h3")}
    drivers = {h: lookup("macvlan").make_driver(ctx[h]) for h in ctx}
    hosts = {h: MacvlanHost(netconf, ctx[h], resync_interval=60.0) for h in ctx}
    placed = {"c1": "h1", "c2": "h2", "c3": "h3"}
    atts = {c: attachment(lan, c, 100 + int(c[1:]), default_route=True) for c in placed}
    host_links = {h: set(links(lan, h)) for h in ctx}

    # ADD on every host; the result round-trips through the agent's JSON store.
    results: dict[str, AttachResult] = {}
    for c, h in placed.items():
        await hosts[h].ensure()
        results[c] = await drivers[h].add(atts[c], netconf)
        assert AttachResult.from_json(results[c].to_json()) == results[c]
    eth0 = links(lan, "c1")["eth0"]
    assert (eth0["mtu"], eth0["address"]) == (1500, atts["c1"].mac)
    assert (eth0["linkinfo"]["info_kind"], eth0["linkinfo"]["info_data"]["mode"]) == (
        "macvlan", "bridge")
    assert results["c1"].mtu == 1500 and results["c1"].host_interface() is None
    # Containers meet across hosts over the LAN, and reach its gateway.
    for a, b in (("c1", "c2"), ("c1", "c3"), ("c2", "c3"), ("c3", "c1")):
        assert ping(lan, a, atts[b].ip), f"{a} cannot reach {b} over the LAN"
    assert ping(lan, "c2", lan.gateway)
    route = sh("ip", "-n", lan.ns("c2"), "route", "show", "default").stdout
    assert route.split()[:5] == ["default", "via", lan.gateway, "dev", "eth0"]
    for c, h in placed.items():
        await drivers[h].check(atts[c], netconf, results[c])
    # A plain parent needs nothing on the host: no sub-interface, no reference.
    assert {h: set(links(lan, h)) for h in ctx} == host_links

    # The host tells the agent every remote peer may be announced.
    peers = frozenset(Peer(a.ip, a.mac, ctx[placed[c]].underlay.ip) for c, a in atts.items())
    source = StaticPeers(peers)
    task = asyncio.create_task(hosts["h1"].run(source))
    try:
        async with asyncio.timeout(10):
            acked = await source.acks.get()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert acked == {p for p in peers if p.ip != atts["c1"].ip}

    # CHECK names what a person broke; DEL + ADD (the agent's repair) puts it back.
    sh("ip", "-n", lan.ns("c1"), "link", "del", "eth0")
    with pytest.raises(CheckFailedError, match="eth0 is missing in the container"):
        await drivers["h1"].check(atts["c1"], netconf, results["c1"])
    assert not ping(lan, "c1", atts["c2"].ip)
    await drivers["h1"].delete(atts["c1"], netconf, results["c1"])
    results["c1"] = await drivers["h1"].add(atts["c1"], netconf)
    await drivers["h1"].check(atts["c1"], netconf, results["c1"])
    assert ping(lan, "c1", atts["c2"].ip)
    sh("ip", "-n", lan.ns("c2"), "route", "del", "default")
    sh("ip", "-n", lan.ns("c2"), "link", "set", "eth0", "mtu", "1400")
    with pytest.raises(CheckFailedError) as failed:
        await drivers["h2"].check(atts["c2"], netconf, results["c2"])
    assert failed.value.problems == (
        "container eth0 has MTU 1400, want 1500",
        f"container eth0 has no default route via {lan.gateway}",
    )

    # DEL, DEL again, DEL as after a lost result (no netns known): no errors, device gone.
    for c, h in placed.items():
        await drivers[h].delete(atts[c], netconf, results[c])
        await drivers[h].delete(atts[c], netconf, results[c])
        await drivers[h].delete(replace(atts[c], netns=""), netconf, None)
        assert set(links(lan, c)) == {"lo"}
        with pytest.raises(CheckFailedError, match="eth0 is missing"):
            await drivers[h].check(atts[c], netconf, results[c])
        await hosts[h].teardown()
        await hosts[h].teardown()
    assert {h: set(links(lan, h)) for h in ctx} == host_links
    assert ping(lan, "sw", lan.ip(12)), "the hosts' own LAN must be untouched"


async def test_delete_leaves_an_interface_that_is_not_a_macvlan(lan: Lan) -> None:
    sh("ip", "-n", lan.ns("c1"), "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    driver = MacvlanDriver(await context(lan, "h1"))
    await driver.delete(attachment(lan, "c1", 101), lan_net(lan), None)
    assert "eth0" in links(lan, "c1")


async def test_add_undoes_partial_work(lan: Lan) -> None:
    """An ADD that fails after the device exists (an address the kernel refuses, a gateway
    off the subnet) leaves the container as it was; an existing eth0 is a conflict."""
    driver = MacvlanDriver(await context(lan, "h1"))
    bad_prefix = replace(attachment(lan, "c1", 101), prefixlen=99)
    with pytest.raises(KernelError, match=re.escape(f"address {lan.ip(101)}/99 on eth0")):
        await driver.add(bad_prefix, lan_net(lan))
    assert set(links(lan, "c1")) == {"lo"}
    far_gateway = replace(attachment(lan, "c1", 101, default_route=True), gateway="192.0.2.1")
    with pytest.raises(KernelError, match=re.escape("default route via 192.0.2.1")):
        await driver.add(far_gateway, lan_net(lan))
    assert set(links(lan, "c1")) == {"lo"}
    sh("ip", "-n", lan.ns("c1"), "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    with pytest.raises(AttachConflictError, match="web-c1: eth0 already exists"):
        await driver.add(attachment(lan, "c1", 101), lan_net(lan))


MODES = [
    pytest.param("bridge", False, True, id="bridge-talks"),
    pytest.param("private", False, False, id="private-blocks"),
    pytest.param("private", True, False, id="private-blocks-even-hairpinned"),
    pytest.param("vepa", False, False, id="vepa-needs-the-switch"),
    pytest.param("vepa", True, True, id="vepa-with-hairpin"),
]


@pytest.mark.parametrize(("mode", "hairpin", "same_host_talks"), MODES)
async def test_modes_on_one_host(lan: Lan, mode: str, hairpin: bool,
                                 same_host_talks: bool) -> None:
    """Two containers on h1, one on h2: the mode decides whether h1's two meet."""
    if hairpin:
        sh("ip", "-n", lan.ns("sw"), "link", "set", "p1", "type", "bridge_slave",
           "hairpin", "on")
    netconf = lan_net(lan, mode=mode)
    placed = {"c1": "h1", "c2": "h1", "c3": "h2"}
    drivers = {h: MacvlanDriver(await context(lan, h)) for h in ("h1", "h2")}
    atts = {c: attachment(lan, c, 100 + int(c[1:])) for c in placed}
    for c, h in placed.items():
        result = await drivers[h].add(atts[c], netconf)
        await drivers[h].check(atts[c], netconf, result)
    assert links(lan, "c1")["eth0"]["linkinfo"]["info_data"]["mode"] == mode
    assert ping(lan, "c1", atts["c2"].ip) is same_host_talks
    assert ping(lan, "c1", atts["c3"].ip), "containers on different hosts always meet"
    for c, h in placed.items():
        await drivers[h].delete(atts[c], netconf, None)


async def test_passthru_takes_the_parent_alone(lan: Lan) -> None:
    lan.plug("h1", "eth1", "q1")
    h1_mac = links(lan, "h1")["eth1"]["address"]
    ctx1 = await context(lan, "h1")
    driver1, driver2 = MacvlanDriver(ctx1), MacvlanDriver(await context(lan, "h2"))
    through = lan_net(lan, name="thru", parent="eth1", mode="passthru")
    att1, att2 = attachment(lan, "c1", 101), attachment(lan, "c2", 102)
    result = await driver1.add(att1, through)
    # It keeps the parent's MAC: setting another would rewrite the host NIC's.
    assert result.interfaces[0].mac == h1_mac == links(lan, "c1")["eth0"]["address"]
    await driver1.check(att1, through, result)
    other = await driver2.add(att2, lan_net(lan, name="other"))
    assert ping(lan, "c1", att2.ip)

    with pytest.raises(ParentUnusableError, match=(
            "network thru: passthru mode needs parent eth1 to itself, and it already "
            "carries another macvlan")):
        await driver1.add(attachment(lan, "c3", 103), through)
    shared = lan_net(lan, name="shared", parent="eth1")
    with pytest.raises(ParentUnusableError, match=re.escape(
            "network shared: parent eth1 is passed through to one macvlan (passthru mode) "
            "and cannot carry another")):
        await driver1.add(attachment(lan, "c3", 103), shared)
    assert set(links(lan, "c3")) == {"lo"}
    for d, att, conf, res in ((driver1, att1, through, result), (driver2, att2, None, other)):
        await d.delete(att, conf or lan_net(lan, name="other"), res)
    assert links(lan, "h1")["eth1"]["address"] == h1_mac


async def test_mtu_is_the_parents_or_smaller(lan: Lan) -> None:
    driver = MacvlanDriver(await context(lan, "h1"))
    att = attachment(lan, "c1", 101)
    result = await driver.add(att, lan_net(lan, mtu=1400))
    assert result.mtu == 1400 == links(lan, "c1")["eth0"]["mtu"]
    await driver.delete(att, lan_net(lan), result)
    with pytest.raises(NetworkConfigError, match=(
            r"macvlan network lan: MTU 9000 does not fit parent eth0 \(MTU 1500\); "
            "use 68-1500")):
        await driver.add(att, lan_net(lan, mtu=9000))
    assert set(links(lan, "c1")) == {"lo"}


@pytest.mark.parametrize(("parent", "error", "message"), [
    pytest.param("eth9", ParentMissingError,
                 "network lan: parent interface eth9 does not exist on this node", id="missing"),
    pytest.param("eth9.10", ParentMissingError,
                 "network lan: parent interface eth9.10 does not exist on this node, nor "
                 "does eth9, the interface its VLAN 10 would go on", id="vlan-base-missing"),
    pytest.param("lo", ParentUnusableError,
                 "network lan: parent lo is not an Ethernet interface", id="loopback"),
    pytest.param("eth0.4095", NetworkConfigError,
                 "macvlan network lan: parent eth0.4095 does not exist, and 4095 is not a "
                 "VLAN ID to create it with (1-4094)", id="vlan-id-out-of-range"),
])
async def test_unusable_parent_is_a_clear_reason(
    lan: Lan, parent: str, error: type[Exception], message: str
) -> None:
    ctx = await context(lan, "h1")
    netconf = lan_net(lan, parent=parent)
    before = links(lan, "h1")
    with pytest.raises(error) as raised:
        await MacvlanHost(netconf, ctx).ensure()
    assert str(raised.value) == message
    with pytest.raises(error) as raised:
        await MacvlanDriver(ctx).add(attachment(lan, "c1", 101), netconf)
    assert str(raised.value) == message
    assert set(links(lan, "c1")) == {"lo"}
    await MacvlanHost(netconf, ctx).teardown()
    assert links(lan, "h1").keys() == before.keys()


def kernel_has_8021q(lan: Lan) -> bool:
    """Ask the kernel in a scratch namespace; nothing outside this test's netns is touched."""
    lan.add_netns("probe")
    probe = lan.ns("probe")
    sh("ip", "-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "b0")
    return sh("ip", "-n", probe, "link", "add", "link", "a0", "name", "a0.10", "type", "vlan",
              "id", "10", check=False).returncode == 0


async def test_vlan_parent(lan: Lan) -> None:
    """eth0.10: refused with the reason on a kernel without 802.1q (this machine's), made,
    shared and removed on one with it (a VM with Debian's kernel)."""
    if kernel_has_8021q(lan):
        await _vlan_lifecycle(lan)
        return
    ctx = await context(lan, "h1")
    netconf = lan_net(lan, parent="eth0.10")
    before = links(lan, "h1")
    reason = ("network lan: parent eth0.10 needs an 802.1q VLAN sub-interface (VLAN 10 on "
              "eth0), but the kernel has no 802.1q VLAN support (module 8021q)")
    with pytest.raises(VlanUnsupportedError) as raised:
        await MacvlanHost(netconf, ctx).ensure()
    assert str(raised.value) == reason
    assert isinstance(raised.value, ParentUnavailableError)
    with pytest.raises(VlanUnsupportedError) as raised:
        await MacvlanDriver(ctx).add(attachment(lan, "c1", 101), netconf)
    assert str(raised.value) == reason
    assert links(lan, "h1").keys() == before.keys()
    assert set(links(lan, "c1")) == {"lo"}


async def _vlan_lifecycle(lan: Lan) -> None:
    """Only runs where the kernel has 802.1q (not on the development machine)."""
    ctx = {h: await context(lan, h) for h in ("h1", "h2")}
    tagged = lan_net(lan, name="tagged", parent="eth0.10")
    also = lan_net(lan, name="also", parent="eth0.10")
    hosts = {h: MacvlanHost(tagged, ctx[h]) for h in ctx}
    drivers = {h: MacvlanDriver(ctx[h]) for h in ctx}
    att1, att2 = attachment(lan, "c1", 101), attachment(lan, "c2", 102)
    r1 = await drivers["h1"].add(att1, tagged)
    await hosts["h2"].ensure()
    r2 = await drivers["h2"].add(att2, tagged)
    sub = links(lan, "h1")["eth0.10"]
    assert sub["ifalias"] == "berth:vlan"
    assert (sub["linkinfo"]["info_kind"], sub["linkinfo"]["info_data"]["id"]) == ("vlan", 10)
    assert ping(lan, "c1", att2.ip), "containers on VLAN 10 cannot meet across hosts"
    # An operator's sub-interface is used and never removed.
    sh("ip", "-n", lan.ns("h1"), "link", "add", "link", "eth0", "name", "eth0.20", "type",
       "vlan", "id", "20")
    mine = lan_net(lan, name="mine", parent="eth0.20")
    await MacvlanHost(mine, ctx["h1"]).ensure()
    await MacvlanHost(mine, ctx["h1"]).teardown()
    assert "eth0.20" in links(lan, "h1")
    # Two networks share eth0.10 on h1; it goes with the last.
    await MacvlanHost(also, ctx["h1"]).ensure()
    await drivers["h1"].delete(att1, tagged, r1)
    await hosts["h1"].teardown()
    assert "eth0.10" in links(lan, "h1")
    await MacvlanHost(also, ctx["h1"]).teardown()
    assert "eth0.10" not in links(lan, "h1")
    await drivers["h2"].delete(att2, tagged, r2)
    await hosts["h2"].teardown()
    assert "eth0.10" not in links(lan, "h2")


def fake_owned_subinterface(lan: Lan, *, owned: bool = True) -> None:
    """h1 gets an ``eth0.10`` that is a veth on the switch (this kernel cannot make VLANs),
    marked as berth's the way ensure marks a sub-interface it created."""
    lan.plug("h1", "eth0.10", "v1")
    if owned:
        sh("ip", "-n", lan.ns("h1"), "link", "set", "eth0.10", "alias", "berth:vlan")


async def test_owned_subinterface_goes_with_its_last_network(lan: Lan) -> None:
    """The ownership and reference rules of teardown on a real kernel, with a veth standing
    in for the sub-interface (only its creation needs 802.1q; see test_vlan_parent)."""
    fake_owned_subinterface(lan)
    ctx = await context(lan, "h1")
    blue, green = (lan_net(lan, name=n, parent="eth0.10") for n in ("blue", "green"))
    hosts = {n.name: MacvlanHost(n, ctx) for n in (blue, green)}
    driver = MacvlanDriver(ctx)
    att = attachment(lan, "c1", 101)
    result = await driver.add(att, blue)          # ADD alone makes blue's reference
    assert ping(lan, "c1", lan.gateway)
    await hosts["green"].ensure()
    refs = {name: link for name, link in links(lan, "h1").items() if name.startswith("mvr")}
    assert {n: (r["link"], r["ifalias"]) for n, r in refs.items()} == {
        anchor_name("blue"): ("eth0.10", "berth:macvlan-ref blue"),
        anchor_name("green"): ("eth0.10", "berth:macvlan-ref green"),
    }
    assert all("UP" not in r["flags"] for r in refs.values())

    await driver.delete(att, blue, result)
    await hosts["blue"].teardown()
    assert "eth0.10" in links(lan, "h1"), "green still uses eth0.10"
    assert anchor_name("blue") not in links(lan, "h1")
    # A reference deleted by hand comes back on the next ensure (the host's resync).
    sh("ip", "-n", lan.ns("h1"), "link", "del", anchor_name("green"))
    await hosts["green"].ensure()
    assert anchor_name("green") in links(lan, "h1")
    # An address a person put on it keeps it too.
    sh("ip", "-n", lan.ns("h1"), "addr", "add", "192.0.2.1/24", "dev", "eth0.10")
    await hosts["green"].teardown()
    assert "eth0.10" in links(lan, "h1")
    sh("ip", "-n", lan.ns("h1"), "addr", "flush", "dev", "eth0.10")
    await hosts["green"].teardown()
    assert "eth0.10" not in links(lan, "h1")
    assert not [n for n in links(lan, "h1") if n.startswith(("mvr", "mvp"))]


async def test_passthru_holder_keeps_an_owned_subinterface(lan: Lan) -> None:
    fake_owned_subinterface(lan)
    ctx = await context(lan, "h1")
    through = lan_net(lan, name="thru", parent="eth0.10", mode="passthru")
    other = lan_net(lan, name="other", parent="eth0.10")
    att = attachment(lan, "c1", 101)
    result = await MacvlanDriver(ctx).add(att, through)
    assert not [n for n in links(lan, "h1") if n.startswith("mvr")], "passthru holds no ref"
    with pytest.raises(ParentUnusableError, match="is passed through"):
        await MacvlanHost(other, ctx).ensure()
    await MacvlanHost(other, ctx).teardown()
    assert "eth0.10" in links(lan, "h1"), "a teardown must not pull a passthru parent"
    await MacvlanDriver(ctx).delete(att, through, result)
    await MacvlanHost(through, ctx).teardown()
    assert "eth0.10" not in links(lan, "h1")
    assert not [n for n in links(lan, "h1") if n.startswith(("mvr", "mvp"))]


async def test_an_operators_parent_is_never_removed(lan: Lan) -> None:
    fake_owned_subinterface(lan, owned=False)
    ctx = await context(lan, "h1")
    netconf = lan_net(lan, parent="eth0.10")
    host = MacvlanHost(netconf, ctx)
    await host.ensure()
    assert not [n for n in links(lan, "h1") if n.startswith("mvr")]
    att = attachment(lan, "c1", 101)
    result = await MacvlanDriver(ctx).add(att, netconf)
    await MacvlanDriver(ctx).delete(att, netconf, result)
    await host.teardown()
    assert "eth0.10" in links(lan, "h1")


async def test_networks_deleted_while_the_agent_was_down_are_cleaned_up(lan: Lan) -> None:
    """No teardown ever came for blue and green (the agent was down when they went); at
    its next start the agent keeps green and releases blue, then green, like teardown."""
    fake_owned_subinterface(lan)
    ctx = await context(lan, "h1")
    for name in ("blue", "green"):
        await MacvlanHost(lan_net(lan, name=name, parent="eth0.10"), ctx).ensure()
    assert {anchor_name("blue"), anchor_name("green")} <= set(links(lan, "h1"))

    assert await remove_stale_macvlans(ctx, ["green", "an-overlay"]) == [anchor_name("blue")]
    assert anchor_name("green") in links(lan, "h1") and "eth0.10" in links(lan, "h1")

    assert await remove_stale_macvlans(ctx, []) == [anchor_name("green"), "eth0.10"]
    assert not [n for n in links(lan, "h1") if n.startswith(("mvr", "mvp", "eth0.10"))]
    assert await remove_stale_macvlans(ctx, []) == []
