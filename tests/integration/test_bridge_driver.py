"""The bridge driver end to end on a real kernel: a simulated node and containers as
network namespaces (tests/bridgelab.py), real nftables, real traffic.

Each test builds its own namespaces under a random prefix and removes them, and every
assertion is about what a user would see: a ping answered or not, the source address a
server saw, what ``nft``/``ip`` list in the node.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from netplugins.bridge.cleanup import remove_stale_networks
from netplugins.bridge.config import bridge_name, port_prefix
from netplugins.bridge.driver import BridgeDriver
from netplugins.bridge.host import BridgeHost
from netplugins.contract import (
    Attachment,
    AttachResult,
    ContainerId,
    HostContext,
    NetConf,
    PortMap,
    mac_from_ip,
)
from netplugins.errors import CheckFailedError, KernelError, NetworkConfigError
from netplugins.netlink import discover_underlay
from netplugins.registry import lookup
from tests.bridgelab import World, world

pytestmark = pytest.mark.integration

APP = NetConf(name="appnet", driver="bridge", subnet="10.42.0.0/24", gateway="10.42.0.1")


@pytest.fixture
def lab() -> Iterator[World]:
    with world() as w:
        yield w


async def context(lab: World) -> HostContext:
    return HostContext(await discover_underlay(lab.host_ip, netns=lab.path("h")),
                       host_netns=lab.path("h"))


def attachment(lab: World, role: str, net: NetConf, host: int, *, default_route: bool = True,
               ports: tuple[PortMap, ...] = (), ifname: str = "eth0") -> Attachment:
    prefix = net.subnet.rsplit(".", 1)[0]
    ip = f"{prefix}.{host}"
    return Attachment(
        container_id=ContainerId(f"{role}-{lab.prefix}"), container_name=role,
        netns=lab.container(role) if ifname == "eth0" else lab.path(role), ip=ip,
        prefixlen=24, mac=mac_from_ip(ip), ifname=ifname, gateway=net.gateway,
        default_route=default_route, ports=ports,
    )


def berth_links(lab: World) -> list[str]:
    return sorted(n for n in lab.links("h") if n.startswith(("bb-", "berth0", "v")))


def assert_clean(lab: World) -> None:
    assert berth_links(lab) == []
    assert "berth" not in lab.ruleset()


async def test_cni_sequence_check_and_repair(lab: World) -> None:
    ctx = await context(lab)
    host = BridgeHost(APP, ctx)
    driver = lookup("bridge").make_driver(ctx)
    a1 = attachment(lab, "c1", APP, 11, ports=(PortMap(8080, 80),))
    a2 = attachment(lab, "c2", APP, 12)
    await host.ensure()
    r1 = await driver.add(a1, APP)
    r2 = await driver.add(a2, APP)
    assert AttachResult.from_json(r1.to_json()) == r1
    assert r1.bridge == host_bridge(r1) and r1.mtu == 1500
    assert [r.dst for r in r1.routes] == ["0.0.0.0/0"]
    await driver.check(a1, APP, r1)
    await driver.check(a2, APP, r2)
    assert lab.ping("c1", a2.ip) and lab.ping("c2", "10.42.0.1")
    routes = lab.run("c1", "ip", "route").stdout
    assert "default via 10.42.0.1 dev eth0" in routes

    # A removed rule fails CHECK by name; the host's resync puts it back.
    handle = rule_handle(lab, "ip", f"{r1.bridge}.filter-fwd", "drop")
    lab.run("h", "nft", "delete", "rule", "ip", "berth", f"{r1.bridge}.filter-fwd",
            "handle", handle)
    with pytest.raises(CheckFailedError, match=re.escape(f"{r1.bridge}.filter-fwd differs")):
        await driver.check(a2, APP, r2)
    report = await host.sync()
    assert report.rules == (r1.bridge,)
    await driver.check(a2, APP, r2)

    # Forwarding switched off by someone else: CHECK says so, resync switches it back on.
    lab.run("h", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    assert not lab.ping("c1", lab.outside_ip)
    with pytest.raises(CheckFailedError, match=re.escape("net.ipv4.ip_forward is 0, want 1")):
        await driver.check(a1, APP, r1)
    assert (await host.sync()).sysctls == ("net.ipv4.ip_forward=1",)
    assert lab.ping("c1", lab.outside_ip)

    # A removed port rule: CHECK fails, and DNAT from the other machine is gone until the
    # firewall's resync re-applies what this agent life applied.
    lab.serve("c1", 80)
    assert lab.ask("o", lab.host_ip, 8080) == lab.outside_ip
    owner = next(c for c in chains(lab, "ip") if c.endswith(".nat-pre")).split(".")[0]
    lab.run("h", "nft", "flush", "chain", "ip", "berth", f"{owner}.nat-pre")
    assert lab.ask("o", lab.host_ip, 8080) is None
    with pytest.raises(CheckFailedError, match=re.escape(f"{owner}.nat-pre differs")):
        await driver.check(a1, APP, r1)
    assert owner in (await host.sync()).reapplied
    assert lab.ask("o", lab.host_ip, 8080) == lab.outside_ip
    await driver.check(a1, APP, r1)

    # A deleted bridge fails CHECK; resync recreates it and takes the veths back.
    lab.run("h", "ip", "link", "del", r1.bridge)
    with pytest.raises(CheckFailedError, match=f"bridge {r1.bridge} is missing"):
        await driver.check(a1, APP, r1)
    assert not lab.ping("c1", a2.ip)
    report = await host.sync()
    assert report.devices[0] == r1.bridge and len(report.devices) >= 3
    await driver.check(a1, APP, r1)
    assert lab.ping("c1", a2.ip)

    # A deleted container veth fails CHECK.
    lab.run("h", "ip", "link", "del", r2.interfaces[0].name)
    with pytest.raises(CheckFailedError, match="is missing"):
        await driver.check(a2, APP, r2)

    # DEL, DEL again, DEL without the stored result; then teardown, twice.
    for att, result in ((a1, r1), (a2, r2)):
        await driver.delete(att, APP, result)
        await driver.delete(att, APP, result)
        await driver.delete(att, APP, None)
        assert lab.links(att.container_name) == ["lo"]
    with pytest.raises(CheckFailedError, match="is missing"):
        await driver.check(a1, APP, r1)
    assert lab.ask("o", lab.host_ip, 8080) is None
    await host.teardown()
    await host.teardown()
    assert_clean(lab)


def host_bridge(result: AttachResult) -> str:
    assert result.bridge.startswith("bb-") and len(result.bridge) == 13
    return result.bridge


def chains(lab: World, family: str) -> list[str]:
    out = lab.run("h", "nft", "list", "chains", family, check=False).stdout
    return re.findall(r"chain (\S+) \{", out)


def rule_handle(lab: World, family: str, chain: str, contains: str) -> str:
    out = lab.run("h", "nft", "-a", "list", "chain", family, "berth", chain).stdout
    for line in out.splitlines():
        if contains in line and "# handle" in line:
            return line.rsplit("# handle", 1)[1].strip()
    raise AssertionError(f"no rule with {contains!r} in {chain}:\n{out}")


async def test_default_network_gets_berth0_and_underlay_mtu(lab: World) -> None:
    lab.run("h", "ip", "link", "set", "eth0", "mtu", "1400")
    ctx = await context(lab)
    net = NetConf(name="bridge", driver="bridge", subnet="172.31.0.0/24", gateway="172.31.0.1")
    host, driver = BridgeHost(net, ctx), BridgeDriver(ctx)
    att = attachment(lab, "c1", net, 2)
    await host.ensure()
    result = await driver.add(att, net)
    assert (result.bridge, result.mtu) == ("berth0", 1400)
    assert "mtu 1400" in lab.run("c1", "ip", "link", "show", "eth0").stdout
    assert "172.31.0.1/24" in lab.run("h", "ip", "addr", "show", "berth0").stdout
    await driver.delete(att, net, result)
    await host.teardown()
    assert_clean(lab)


async def test_egress_is_masqueraded_and_internal_has_none(lab: World) -> None:
    ctx = await context(lab)
    internal = NetConf(name="private", driver="bridge", subnet="10.43.0.0/24",
                       gateway="10.43.0.1", internal=True)
    hosts = [BridgeHost(APP, ctx), BridgeHost(internal, ctx)]
    driver = BridgeDriver(ctx)
    a1 = attachment(lab, "c1", APP, 11)
    p1 = attachment(lab, "p1", internal, 11)
    p2 = attachment(lab, "p2", internal, 12)
    for h in hosts:
        await h.ensure()
    for att, net in ((a1, APP), (p1, internal), (p2, internal)):
        await driver.add(att, net)
    lab.serve("o", 7000)
    # The outside machine sees the node's address, and has no route to the subnet.
    assert lab.ask("c1", lab.outside_ip, 7000) == lab.host_ip
    assert lab.ping("c1", lab.outside_ip)
    # An internal network reaches its own members and its gateway, nothing beyond.
    assert lab.ping("p1", p2.ip) and lab.ping("p1", "10.43.0.1")
    assert lab.ask("p1", lab.outside_ip, 7000) is None
    assert not lab.ping("p1", lab.outside_ip)
    # Nothing is forwarded into it either, even with a route (given to the outside here).
    lab.run("o", "ip", "route", "add", "10.43.0.0/24", "via", lab.host_ip)
    lab.run("o", "ip", "route", "add", "10.42.0.0/24", "via", lab.host_ip)
    assert not lab.ping("o", p1.ip)
    assert not lab.ping("o", a1.ip), "unsolicited traffic into a bridge must be dropped"
    # Ports on an internal network, or off the default-route attachment, are refused.
    bad = attachment(lab, "p3", internal, 13, default_route=False, ports=(PortMap(80, 80),))
    with pytest.raises(NetworkConfigError, match="internal network"):
        await driver.add(bad, internal)
    bad = attachment(lab, "c9", APP, 19, default_route=False, ports=(PortMap(80, 80),))
    with pytest.raises(NetworkConfigError, match="default route"):
        await driver.add(bad, APP)
    assert lab.links("p3") == ["lo"] and lab.links("c9") == ["lo"]
    for h in hosts:
        await h.teardown()
    assert_clean(lab)


@pytest.mark.parametrize("br_netfilter", ["1", "0"], ids=["br_netfilter-on", "br_netfilter-off"])
async def test_icc_and_isolation(lab: World, br_netfilter: str) -> None:
    """icc=false blocks pairs on one bridge (published ports and hairpin still work), icc
    true allows them, and two bridges cannot reach each other; with and without the
    kernel passing bridged traffic through iptables/nftables (br_netfilter)."""
    lab.run("h", "sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={br_netfilter}")
    ctx = await context(lab)
    closed = NetConf(name="closed", driver="bridge", subnet="10.44.0.0/24",
                     gateway="10.44.0.1", options={"icc": "false"})
    driver = BridgeDriver(ctx)
    hosts = [BridgeHost(APP, ctx), BridgeHost(closed, ctx)]
    for h in hosts:
        await h.ensure()
    a1, a2 = attachment(lab, "a1", APP, 11), attachment(lab, "a2", APP, 12)
    k1 = attachment(lab, "k1", closed, 11, ports=(PortMap(8081, 80),))
    k2 = attachment(lab, "k2", closed, 12)
    for att, net in ((a1, APP), (a2, APP), (k1, closed), (k2, closed)):
        await driver.add(att, net)
    assert lab.ping("a1", a2.ip), "icc=true: same-bridge containers must reach each other"
    assert not lab.ping("k1", k2.ip), "icc=false: same-bridge pair must be blocked"
    assert not lab.ping("k2", k1.ip)
    assert lab.ping("k1", "10.44.0.1") and lab.ping("k2", lab.outside_ip)
    lab.serve("k1", 80)
    assert lab.ask("k2", k1.ip, 80) is None
    assert lab.ask("k1", lab.host_ip, 8081) == "10.44.0.1", "hairpin on an icc=false bridge"
    assert lab.ask("k2", lab.host_ip, 8081) == "10.44.0.1"
    # Isolation: neither direction between the two bridges, but published ports are the
    # node's ports and answer everybody.
    assert not lab.ping("a1", k1.ip) and not lab.ping("k2", a2.ip)
    lab.serve("a2", 80)
    assert lab.ask("k1", a2.ip, 80) is None
    assert lab.ask("a1", lab.host_ip, 8081) is not None
    for h in hosts:
        await h.teardown()
    assert_clean(lab)


async def test_published_ports(lab: World) -> None:
    ctx = await context(lab)
    host, driver = BridgeHost(APP, ctx), BridgeDriver(ctx)
    await host.ensure()
    web = attachment(lab, "web", APP, 11, ports=(
        PortMap(8080, 80), PortMap(8081, 81, host_ip="127.0.0.1"),
        PortMap(8082, 82, host_ip=lab.host_ip), PortMap(5353, 53, protocol="udp"),
    ))
    peer = attachment(lab, "peer", APP, 12)
    await driver.add(web, APP)
    await driver.add(peer, APP)
    for port in (80, 81, 82):
        lab.serve("web", port)
    lab.serve("web", 53, "udp")
    # From another machine: the client's own address arrives (no SNAT).
    assert lab.ask("o", lab.host_ip, 8080) == lab.outside_ip
    assert lab.ask("o", lab.host_ip, 5353, "udp") == lab.outside_ip
    assert lab.ask("o", lab.host_ip, 8082) == lab.outside_ip
    assert lab.ask("o", lab.host_ip, 8081) is None, "a 127.0.0.1 port is not for the LAN"
    # From the node itself, on its address and on loopback (route_localnet + masquerade).
    assert lab.ask("h", lab.host_ip, 8080) == lab.host_ip
    assert lab.ask("h", "127.0.0.1", 8080) == "10.42.0.1"
    assert lab.ask("h", "127.0.0.1", 8081) == "10.42.0.1"
    assert lab.ask("h", "127.0.0.1", 8082) is None, "host_ip restricts the address"
    assert lab.ask("h", lab.host_ip, 8081) is None
    # Hairpin: the container reaches its own published port, and so does its neighbour.
    assert lab.ask("web", lab.host_ip, 8080) == "10.42.0.1"
    assert lab.ask("web", "10.42.0.1", 8080) == "10.42.0.1"
    assert lab.ask("peer", lab.host_ip, 8080) == "10.42.0.1"
    await host.teardown()
    assert_clean(lab)


async def test_add_undoes_partial_work(lab: World) -> None:
    """An ADD that fails after the veth and before the ports leaves nothing behind."""
    ctx = await context(lab)
    host, driver = BridgeHost(APP, ctx), BridgeDriver(ctx)
    await host.ensure()
    att = attachment(lab, "c1", APP, 11, ports=(PortMap(8080, 80),))
    # A default route already in the container makes the driver's route add fail.
    lab.run("c1", "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    lab.run("c1", "ip", "link", "set", "d0", "up")
    lab.run("c1", "ip", "route", "add", "default", "dev", "d0")
    with pytest.raises(KernelError, match=re.escape("default route via 10.42.0.1")):
        await driver.add(att, APP)
    assert sorted(lab.links("c1")) == ["d0", "d1", "lo"]
    assert [n for n in berth_links(lab) if n.startswith("v")] == []
    assert not [c for c in chains(lab, "ip") if c.startswith("c-")]
    await host.teardown()
    assert_clean(lab)


async def test_networks_deleted_while_the_agent_was_down_are_removed(lab: World) -> None:
    ctx = await context(lab)
    default = NetConf(name="bridge", driver="bridge", subnet="172.31.0.0/24")
    gone = NetConf(name="gone", driver="bridge", subnet="10.45.0.0/24",
                   options={"icc": "false"})
    driver = BridgeDriver(ctx)
    for net, role in ((APP, "a1"), (default, "d1"), (gone, "g1")):
        await BridgeHost(net, ctx).ensure()
        ports = (PortMap(8080, 80),) if net is gone else ()
        await driver.add(attachment(lab, role, net, 11, ports=ports), net)
    app_bridge = BridgeHost(APP, ctx)
    restarted = await context(lab)
    removed = await remove_stale_networks(restarted, keep=["appnet"])
    assert sorted(removed) == sorted(["berth0", f"bb-{host_bridge_hash(gone)}"])
    left = berth_links(lab)
    assert left[0] == f"bb-{host_bridge_hash(APP)}" and len(left) == 2, left
    assert left[1] == port_prefix("appnet") + left[1][7:]
    rules = lab.ruleset()
    assert "chain berth0." not in rules and f"chain bb-{host_bridge_hash(gone)}." not in rules
    assert "table bridge berth" not in rules and "chain c-" not in rules
    assert lab.ping("a1", "10.42.0.1") and not lab.ping("g1", "10.45.0.1")
    assert await remove_stale_networks(restarted, keep=["appnet"]) == []
    await app_bridge.teardown()
    assert_clean(lab)


def host_bridge_hash(net: NetConf) -> str:
    return bridge_name(net.name)[3:]
