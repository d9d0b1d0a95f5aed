"""The node's berth and etcd ports, closed to containers on a real kernel (nodeports.py):
ADD (ensure), CHECK, DEL (remove) of the ``node-ports`` owner, what a container can and
cannot reach with it and without it, an agent restart, repair, and a published port that
would steal one. Namespaces come from tests/bridgelab.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from netplugins.bridge.driver import BridgeDriver
from netplugins.bridge.host import BridgeHost
from netplugins.contract import Attachment, ContainerId, HostContext, NetConf, PortMap, mac_from_ip
from netplugins.errors import NetworkConfigError
from netplugins.firewall import NodePorts
from netplugins.firewall.nodeports import OWNER, node_ports_ruleset
from netplugins.netlink import discover_underlay
from tests.bridgelab import WHOAMI, World, world

pytestmark = pytest.mark.integration

PORTS = NodePorts()
TCP = sorted(PORTS.tcp)
OPEN_PORT = 8000          # any other service of the node stays reachable
FOREIGN = """table inet other {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 9999 drop
	}
}
"""
APP = NetConf(name="appnet", driver="bridge", subnet="10.42.0.0/24", gateway="10.42.0.1")


@pytest.fixture
def lab() -> Iterator[World]:
    with world() as w:
        for port in (*TCP, OPEN_PORT):
            w.serve("h", port)
        w.serve("h", 4789, "udp")
        yield w


async def context(lab: World) -> HostContext:
    return HostContext(await discover_underlay(lab.host_ip, netns=lab.path("h")),
                       host_netns=lab.path("h"))


def plug(lab: World, bridge: str, role: str, third: int) -> str:
    """A bridge named ``bridge`` on the node with .1, and container ``role`` on it (.2)
    whose default route leads to the node; returns the bridge's address."""
    gw, mine = f"10.77.{third}.1", f"10.77.{third}.2"
    lab.container(role)
    lab.run("h", "ip", "link", "add", bridge, "type", "bridge")
    lab.run("h", "ip", "addr", "add", f"{gw}/24", "dev", bridge)
    lab.run("h", "ip", "link", "set", bridge, "up")
    lab.run("h", "ip", "link", "add", f"p{role}", "type", "veth", "peer", "name", "eth0",
            "netns", lab.ns(role))
    lab.run("h", "ip", "link", "set", f"p{role}", "master", bridge, "up")
    for argv in (("addr", "add", f"{mine}/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                 ("link", "set", "lo", "up"), ("route", "add", "default", "via", gw)):
        lab.run(role, "ip", *argv)
    return gw


def reachable(lab: World, role: str, ips: list[str], ports: list[int]) -> set[str]:
    """Every ip:port that accepts a TCP connection from ``role`` (all tried at once)."""
    targets = [f"{ip}:{port}" for ip in ips for port in ports]
    out = lab.run(role, sys.executable, WHOAMI, "scan", *targets).stdout
    return set(out.split())


def everything(ips: list[str], ports: list[int]) -> set[str]:
    return {f"{ip}:{port}" for ip in ips for port in ports}


@pytest.mark.parametrize("bridge", ["berth0", "bb-0a1b2c3d4e", "bo-4097"],
                         ids=["default-network", "bridge-network", "overlay-bridge"])
async def test_closed_from_berth_interfaces_on_every_address(lab: World, bridge: str) -> None:
    gw = plug(lab, bridge, "c1", 1)
    addresses = [lab.host_ip, gw]
    ctx = await context(lab)
    fw = ctx.firewall
    # Without the rules every port answers: the listeners are real, so the test can fail.
    assert reachable(lab, "c1", [lab.host_ip, gw], [*TCP, OPEN_PORT]) == everything(
        [lab.host_ip, gw], [*TCP, OPEN_PORT])
    # (UDP to the gateway: the server's unbound reply leaves from the bridge's address.)
    assert lab.ask("c1", gw, 4789, "udp") == "10.77.1.2"

    assert await fw.ensure_node_ports(PORTS)                                      # ADD
    assert await fw.check(node_ports_ruleset(PORTS)) == []                        # CHECK
    assert reachable(lab, "c1", addresses, TCP) == set()
    assert lab.ask("c1", gw, 4789, "udp") is None
    # Everything else the container may use still works: other ports, ICMP.
    assert reachable(lab, "c1", [lab.host_ip, gw], [OPEN_PORT]) == everything(
        [lab.host_ip, gw], [OPEN_PORT])
    assert lab.ping("c1", lab.host_ip) and lab.ping("c1", gw)
    # The LAN is not a container: the node's ports stay open to it (mTLS guards them).
    assert reachable(lab, "o", [lab.host_ip], TCP) == everything([lab.host_ip], TCP)

    await fw.remove(OWNER)                                                        # DEL
    await fw.remove(OWNER)                                                        # DEL again
    assert "table inet berth" not in lab.ruleset()
    assert await fw.check(node_ports_ruleset(PORTS)) != []
    assert reachable(lab, "c1", [lab.host_ip], TCP) == everything([lab.host_ip], TCP)


async def test_a_bridge_berth_did_not_make_is_left_alone(lab: World) -> None:
    gw = plug(lab, "br-other", "c1", 2)
    await (await context(lab)).firewall.ensure_node_ports(PORTS)
    assert reachable(lab, "c1", [gw], TCP) == everything([gw], TCP)


async def test_configured_ports_are_closed_too(lab: World) -> None:
    gw = plug(lab, "berth0", "c1", 3)
    fw = (await context(lab)).firewall
    await fw.ensure_node_ports(NodePorts.with_tcp([OPEN_PORT]))
    assert reachable(lab, "c1", [lab.host_ip, gw], [OPEN_PORT]) == set()
    # Fewer ports replace the set in one transaction; the dropped one opens again.
    await fw.ensure_node_ports(PORTS)
    assert lab.ruleset().count(f"jump {OWNER}.filter-in") == 1
    assert reachable(lab, "c1", [gw], [OPEN_PORT]) == {f"{gw}:{OPEN_PORT}"}


async def test_restart_changes_nothing_and_repairs(lab: World) -> None:
    """A restarted agent re-ensures: not one nft write, no duplicate; a flushed chain is
    reported by CHECK and put back; a table berth did not write is never touched."""
    lab.run("h", "nft", "-f", "-", stdin=FOREIGN)
    gw = plug(lab, "berth0", "c1", 4)
    await (await context(lab)).firewall.ensure_node_ports(PORTS)
    rules = lab.ruleset()
    assert rules.count(f"jump {OWNER}.filter-in") == 1
    with lab.nft_monitor() as events:
        restarted = (await context(lab)).firewall
        assert not await restarted.ensure_node_ports(PORTS)
    assert events == [], "a restart wrote to nftables:\n" + "\n".join(events)
    assert lab.ruleset() == rules

    lab.run("h", "nft", "flush", "chain", "inet", "berth", f"{OWNER}.filter-in")
    assert reachable(lab, "c1", [gw], [2379]) == {f"{gw}:2379"}
    problems = await restarted.check(node_ports_ruleset(PORTS))
    assert problems == [f"firewall chain inet berth {OWNER}.filter-in differs: 0 rules, "
                        "want 2 (2 missing)"]
    assert await restarted.resync() == [OWNER]
    assert lab.ruleset() == rules
    assert reachable(lab, "c1", [gw], [2379]) == set()

    await restarted.remove(OWNER)
    assert "berth" not in lab.ruleset()
    assert FOREIGN.strip() in lab.ruleset()


async def test_a_reserved_host_port_is_not_published(lab: World) -> None:
    ctx = await context(lab)
    await ctx.firewall.ensure_node_ports(PORTS)
    await BridgeHost(APP, ctx).ensure()
    ip = "10.42.0.11"
    att = Attachment(
        container_id=ContainerId(f"c1-{lab.prefix}"), container_name="c1",
        netns=lab.container("c1"), ip=ip, prefixlen=24, mac=mac_from_ip(ip),
        gateway=APP.gateway, default_route=True, ports=(PortMap(7071, 80),),
    )
    with pytest.raises(NetworkConfigError, match=r"^network appnet: c1: host port 7071/tcp "
                       "is one of this node's berth or etcd ports"):
        await BridgeDriver(ctx).add(att, APP)
    assert "c-" not in lab.ruleset(), "nothing of the refused ADD is left"
    await BridgeHost(APP, ctx).teardown()


def listen(lab: World, *targets: str) -> None:
    """Listeners in the node (tests/whoami.py listen), killed with the world."""
    proc = subprocess.Popen(["nsenter", f"--net={lab.path('h')}", sys.executable, WHOAMI,
                             "listen", *targets], stdout=subprocess.PIPE)
    lab.procs.append(proc)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    proc.stdout.close()
    assert ready == b"ready\n", ready


def link_local(lab: World, role: str, dev: str) -> str | None:
    """``dev``'s IPv6 link-local address once DAD is done (None before)."""
    out = lab.run(role, "ip", "-j", "-6", "addr", "show", "dev", dev).stdout
    for link in json.loads(out):
        for addr in link.get("addr_info", []):
            if addr["local"].startswith("fe80:") and not addr.get("tentative"):
                return str(addr["local"])
    return None


async def test_ipv6_link_local_is_closed_too(lab: World) -> None:
    """Every bridge has an IPv6 link-local address, and a daemon on ``[::]`` listens there:
    the chain is inet, so that path is closed as well."""
    plug(lab, "bb-0a1b2c3d4e", "c1", 5)
    listen(lab, ":::2379", ":::7071")
    for _ in range(100):
        bridge, mine = link_local(lab, "h", "bb-0a1b2c3d4e"), link_local(lab, "c1", "eth0")
        if bridge and mine:
            break
        await asyncio.sleep(0.1)
    assert bridge and mine, "no IPv6 link-local address on the bridge or the container"
    targets = [f"{bridge}%eth0:2379", f"{bridge}%eth0:7071"]
    out = lab.run("c1", sys.executable, WHOAMI, "scan", *targets).stdout
    assert set(out.split()) == set(targets), "open without the rules"
    await (await context(lab)).firewall.ensure_node_ports(PORTS)
    assert lab.run("c1", sys.executable, WHOAMI, "scan", *targets).stdout == ""
