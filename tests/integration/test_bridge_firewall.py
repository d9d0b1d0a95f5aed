"""The node firewall under the bridge driver, on a real kernel: living next to Docker's
FORWARD DROP, an agent restart that must change nothing, stale owners, and rules that are
not berth's staying untouched. Namespaces come from tests/bridgelab.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

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
from netplugins.errors import CheckFailedError
from netplugins.netlink import discover_underlay
from tests.bridgelab import World, world

pytestmark = pytest.mark.integration

APP = NetConf(name="appnet", driver="bridge", subnet="10.42.0.0/24", gateway="10.42.0.1")
CLOSED = NetConf(name="closed", driver="bridge", subnet="10.44.0.0/24", gateway="10.44.0.1",
                 options={"icc": "false"})
PRIVATE = NetConf(name="private", driver="bridge", subnet="10.43.0.0/24", gateway="10.43.0.1",
                  internal=True)
FOREIGN = """table inet other {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 9999 drop
	}
}
"""


@pytest.fixture
def lab() -> Iterator[World]:
    with world() as w:
        yield w


async def context(lab: World) -> HostContext:
    return HostContext(await discover_underlay(lab.host_ip, netns=lab.path("h")),
                       host_netns=lab.path("h"))


def attachment(lab: World, role: str, net: NetConf, host: int,
               ports: tuple[PortMap, ...] = ()) -> Attachment:
    ip = f"{net.subnet.rsplit('.', 1)[0]}.{host}"
    return Attachment(
        container_id=ContainerId(f"{role}-{lab.prefix}"), container_name=role,
        netns=lab.container(role), ip=ip, prefixlen=24, mac=mac_from_ip(ip),
        gateway=net.gateway, default_route=True, ports=ports,
    )


def docker_like(lab: World, *, docker_user: bool) -> None:
    """What dockerd leaves in iptables-nft: FORWARD DROP, DOCKER-USER, a rule of its own."""
    ipt = ("iptables", "-w", "5")
    lab.run("h", *ipt, "-P", "FORWARD", "DROP")
    lab.run("h", *ipt, "-A", "FORWARD", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT")
    if docker_user:
        lab.run("h", *ipt, "-N", "DOCKER-USER")
        lab.run("h", *ipt, "-A", "DOCKER-USER", "-j", "RETURN")
        lab.run("h", *ipt, "-I", "FORWARD", "-j", "DOCKER-USER")


def iptables_all(lab: World) -> str:
    return lab.run("h", "iptables", "-w", "5", "-S").stdout


@pytest.mark.parametrize("docker_user", [True, False], ids=["DOCKER-USER", "FORWARD-only"])
async def test_forward_drop_coexistence(lab: World, docker_user: bool) -> None:
    docker_like(lab, docker_user=docker_user)
    before = iptables_all(lab)
    ctx = await context(lab)
    host, driver = BridgeHost(APP, ctx), BridgeDriver(ctx)
    await host.ensure()
    a1 = attachment(lab, "c1", APP, 11, ports=(PortMap(8080, 80),))
    a2 = attachment(lab, "c2", APP, 12)
    r1 = await driver.add(a1, APP)
    await driver.add(a2, APP)
    bridge = r1.bridge
    chain = "DOCKER-USER" if docker_user else "FORWARD"
    ours = [line for line in lab.iptables(chain).splitlines() if f"berth:{bridge}" in line]
    assert sorted(ours) == sorted(
        f'-A {chain} {flag} {bridge} -m comment --comment "berth:{bridge}" -j ACCEPT'
        for flag in ("-i", "-o"))
    if not docker_user:
        assert lab.iptables().splitlines()[1:3] == ours, "at the top of FORWARD"
    lab.serve("o", 7000)
    lab.serve("c1", 80)
    # Egress, same-bridge traffic (bridged through FORWARD by br_netfilter) and DNAT.
    assert lab.ask("c1", lab.outside_ip, 7000) == lab.host_ip
    assert lab.ping("c2", a1.ip)
    assert lab.ask("o", lab.host_ip, 8080) == lab.outside_ip
    await driver.check(a1, APP, r1)

    # Without the accepts Docker's policy wins: that is what they are for.
    for line in ours:
        lab.run("h", "iptables", "-w", "5", *re.sub(r"^-A", "-D", line).replace('"', "")
                .split())
    assert lab.ask("c1", lab.outside_ip, 7000) is None
    assert not lab.ping("c2", a1.ip)
    with pytest.raises(CheckFailedError, match="iptables FORWARD drops and the accept -i"):
        await driver.check(a1, APP, r1)
    assert (await host.sync()).rules == (bridge,)
    assert lab.ask("c1", lab.outside_ip, 7000) == lab.host_ip

    await driver.delete(a1, APP, r1)
    await host.teardown()
    assert iptables_all(lab) == before, "exactly berth's accepts are removed"
    assert "table ip berth" not in lab.ruleset()


async def test_forward_accept_policy_touches_no_iptables(lab: World) -> None:
    ctx = await context(lab)
    host = BridgeHost(APP, ctx)
    await host.ensure()
    assert "table ip filter" not in lab.ruleset()
    assert lab.iptables() == "-P FORWARD ACCEPT\n"
    await host.teardown()


async def test_restart_changes_nothing(lab: World) -> None:
    """A new Firewall (a restarted agent) re-ensures and CHECKs everything: the rule set is
    byte-identical, nothing is duplicated, and not a single write reaches nftables."""
    docker_like(lab, docker_user=True)
    lab.run("h", "nft", "-f", "-", stdin=FOREIGN)
    ctx = await context(lab)
    nets = (APP, CLOSED, PRIVATE)
    atts = {
        "c1": (attachment(lab, "c1", APP, 11, ports=(PortMap(8080, 80),
                                                    PortMap(5353, 53, "udp"))), APP),
        "k1": (attachment(lab, "k1", CLOSED, 11, ports=(PortMap(8081, 80, host_ip="127.0.0.1"),
                                                       )), CLOSED),
        "p1": (attachment(lab, "p1", PRIVATE, 11), PRIVATE),
    }
    driver = BridgeDriver(ctx)
    for net in nets:
        await BridgeHost(net, ctx).ensure()
    results: dict[str, AttachResult] = {}
    for name, (att, net) in atts.items():
        results[name] = await driver.add(att, net)
    rules, ipt = lab.ruleset(), iptables_all(lab)
    assert rules.count("jump bb-") == 3 + 3 + 2 + 1, rules  # raw, fwd, post, bridge fwd
    assert FOREIGN.strip() in rules

    with lab.nft_monitor() as events:
        restarted = await context(lab)
        assert restarted.firewall is not ctx.firewall
        for net in nets:
            await BridgeHost(net, restarted).ensure()
        for name, (att, net) in atts.items():
            await BridgeDriver(restarted).check(att, net, results[name])
    assert events == [], "a restart wrote to nftables:\n" + "\n".join(events)
    assert lab.ruleset() == rules
    assert iptables_all(lab) == ipt

    # Applying the same owners again through the first object changes nothing either.
    for net in nets:
        await BridgeHost(net, ctx).ensure()
    assert lab.ruleset() == rules

    for name, (att, net) in atts.items():
        await driver.delete(att, net, results[name])
    for net in nets:
        await BridgeHost(net, restarted).teardown()
    assert "berth" not in lab.ruleset()
    assert FOREIGN.strip() in lab.ruleset(), "a table berth did not write is untouched"


async def test_stale_container_rules_are_pruned(lab: World) -> None:
    ctx = await context(lab)
    host, driver = BridgeHost(APP, ctx), BridgeDriver(ctx)
    await host.ensure()
    gone = attachment(lab, "c1", APP, 11, ports=(PortMap(8080, 80),))
    kept = attachment(lab, "c2", APP, 12, ports=(PortMap(8081, 80),))
    r1 = await driver.add(gone, APP)
    await driver.add(kept, APP)
    owners = sorted(set(re.findall(r"chain (c-[0-9a-f]+)\.", lab.ruleset())))
    assert len(owners) == 2
    # The container dies and no DEL comes: its netns goes, and the kernel takes its veth.
    lab.drop_ns("c1")
    veth = r1.interfaces[0].name
    for _ in range(100):
        if veth not in lab.links("h"):
            break
        await asyncio.sleep(0.05)
    assert veth not in lab.links("h")
    report = await host.sync()
    assert len(report.pruned) == 1 and report.pruned[0] in owners
    left = sorted(set(re.findall(r"chain (c-[0-9a-f]+)\.", lab.ruleset())))
    assert left == [o for o in owners if o != report.pruned[0]]
    lab.serve("c2", 80)
    assert lab.ask("o", lab.host_ip, 8081) == lab.outside_ip
    assert lab.ask("o", lab.host_ip, 8080) is None
    await host.teardown()
    assert "berth" not in lab.ruleset()
