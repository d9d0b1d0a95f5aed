"""BridgeHost: the host-wide half of the bridge driver, one per bridge network per node.

The agent creates it for each bridge network with endpoints on this node, calls
``ensure()`` before the first ADD, runs ``run(peers)`` as a task (a periodic resync; a
bridge network is node-local, so it has no peers to program) and calls ``teardown()``
after the last DEL or when the network is deleted.

Design notes
------------
Shape. Docker's: one Linux bridge per network and node (``berth0`` for the default
network ``bridge``, like docker0; ``bb-<10 hex>`` otherwise, see config.py) holding the
gateway address, and a veth per container with the default route via the gateway on the
attachment that carries it. IPAM is per node, so every node can reuse a subnet: there is
no cross-node reach, and none is wanted. The bridge gets a MAC derived from the gateway IP,
because a bridge with no fixed MAC takes its lowest port's MAC, which changes as
containers come and go and leaves a stale gateway entry in every container's ARP cache.
Its MTU is NetConf.mtu or else the underlay's, set explicitly so ports cannot change it.

Firewall. All rules go through the node's Firewall (netplugins.firewall, whose notes say
why nftables): one owner per network (the bridge name) and one per container that
publishes ports. Owner chains only drop or return, so the order of networks is moot.

* Egress: ``masquerade`` for traffic from the subnet leaving through any other interface
  (Docker's rule), and ``ip_forward`` on in the host netns. An ``internal`` network has no
  masquerade, and its forward chain drops everything entering or leaving the bridge, so
  only traffic between its containers and to the host itself remains.
* Isolation: a packet routed from one berth bridge to another is dropped (Docker's
  isolation chains, as one rule per network: in on my bridge, out on any berth bridge).
  Unsolicited traffic routed into a bridge from elsewhere is dropped too; replies
  (``ct state established,related``) and published ports (``ct status dnat``) pass.
* icc=false. This kernel is built with br_netfilter (CONFIG_BRIDGE_NETFILTER=y, and every
  new netns starts with bridge-nf-call-iptables=1), but a host may also run without it, so
  the rule must hold either way. Two layers: the bridge family drops frames that the
  bridge forwards between ports of this network (their names share ``v<6 hex>``), unless
  ``meta pkttype host``; and the ip family drops packets routed back into the same bridge
  unless DNATed. Not bridge port isolation (IFLA_BRPORT_ISOLATED): with br_netfilter, a
  container reaching its own published port is DNATed in the bridge's prerouting hook and
  *bridged* back out of its own port ("bridged DNAT"), and an isolated port refuses that
  frame even with hairpin on, so hairpin would break. Such a frame is the only one the
  bridge forwards with pkttype host (it was addressed to the bridge's own MAC), which is
  how the bridge rule lets it through; ``ct`` is not usable in the bridge family here
  (no nf_conntrack_bridge).
* Hairpin mode is on for every port, for that same bridged DNAT. The masquerade of
  ``ct status dnat`` traffic from the subnet back into the bridge makes the reply return
  through the host, whether the container reached its own port or a neighbour's.
* Published ports (container owners, see rules.py): DNAT in prerouting for traffic
  from other hosts and containers, and in the nat output chain for the node's own
  processes, both limited by ``fib daddr type local`` or the port's host_ip. A port
  reachable on 127.0.0.1 needs ``route_localnet`` (else the kernel drops a routed packet
  with a loopback source) and a masquerade of 127.0.0.0/8 sources; like Docker, berth sets
  route_localnet only on the bridge (``net.ipv4.conf.<bridge>.route_localnet``), not on
  ``all``, which would let LAN neighbours reach the host's loopback services. With it on,
  a container could still send to 127.0.0.1 through its gateway or spoof a loopback
  source, so the network's ``raw-pre`` chain drops both on the bridge, and prerouting
  never DNATs a 127.0.0.0/8 destination (kube-proxy's CVE-2020-8558).

Stale rules. A container owner is named after its host veth (config.py), and the kernel
deletes that veth when the container's netns dies; every ``ensure()`` and resync prunes
container owners whose veth is gone, for any network, so a container whose DEL never came
leaves no rules. ``teardown()`` removes the network's owner, every container owner of the
network and any of its veths left, then the bridge.

Resync. Other actors can delete devices, addresses or rules. Every pass is
level-triggered: ``ensure()`` re-applies the network's Ruleset (one transaction; no change
if nothing differs), recreates and re-addresses the bridge, sets the sysctls, prunes stale
owners, and the Firewall re-applies every owner it remembers whose rules differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from netplugins.bridge.cleanup import dead
from netplugins.bridge.config import (
    CONTAINER_OWNER_PREFIX,
    BridgeConf,
    port_prefix,
    veth_of_owner,
)
from netplugins.bridge.devices import ensure_bridge, link_exists, remove_bridge
from netplugins.bridge.rules import network_ruleset
from netplugins.contract import HostContext, NetConf, PeerSource
from netplugins.firewall import Firewall
from netplugins.netlink import route_socket
from netplugins.resync import resync_forever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncReport:
    """What one pass had to do; all empty when the host was already right."""

    devices: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    sysctls: tuple[str, ...] = ()
    reapplied: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()


def _sysctls(conf: BridgeConf) -> list[tuple[str, str]]:
    """ip_forward for egress and ports; route_localnet on the bridge for 127.0.0.1 ports."""
    if conf.internal:
        return []
    return [("net.ipv4.ip_forward", "1"), (f"net.ipv4.conf.{conf.bridge}.route_localnet", "1")]


async def ensure_sysctls(fw: Firewall, conf: BridgeConf) -> list[str]:
    return [f"{k}={v}" for k, v in _sysctls(conf) if await fw.ensure_sysctl(k, v)]


async def sysctl_problems(fw: Firewall, conf: BridgeConf) -> list[str]:
    found = []
    for key, value in _sysctls(conf):
        have = await fw.sysctl(key)
        if have is not None and have != value:   # None: no bridge, reported on its own
            found.append(f"{key} is {have}, want {value}")
    return found


class BridgeHost:
    """Bridge, sysctls and network rules of one bridge network on this node."""

    def __init__(self, net: NetConf, ctx: HostContext, *, resync_interval: float = 30.0,
                 retry_delay: float = 1.0) -> None:
        self._conf = BridgeConf.of(net, ctx.underlay)
        self._net = net
        self._ctx = ctx
        self._resync_interval = resync_interval
        self._retry_delay = retry_delay

    @property
    def network(self) -> NetConf:
        return self._net

    async def ensure(self) -> None:
        report = await self._ensure()
        if report != SyncReport():
            log.info("bridge %s: %s", self._net.name, report)

    async def _ensure(self) -> SyncReport:
        fw = self._ctx.firewall
        # Rules first: isolation and the internal drops hold before any port comes up.
        rules = (self._conf.bridge,) if await fw.apply(network_ruleset(self._conf)) else ()
        async with route_socket(self._ctx.host_netns) as ipr:
            devices = await ensure_bridge(ipr, self._conf)

            async def veth_alive(owner: str) -> bool:
                return await link_exists(ipr, veth_of_owner(owner))

            sysctls = await ensure_sysctls(fw, self._conf)
            pruned = await fw.prune(CONTAINER_OWNER_PREFIX, veth_alive)
        return SyncReport(tuple(devices), rules, tuple(sysctls), (), tuple(pruned))

    async def sync(self) -> SyncReport:
        """One resync pass: ensure(), then put back any remembered owner's rules."""
        report = await self._ensure()
        reapplied = await self._ctx.firewall.resync()
        return SyncReport(report.devices, report.rules, report.sysctls, tuple(reapplied),
                          report.pruned)

    async def run(self, peers: PeerSource) -> None:
        """Resync every ``resync_interval`` until cancelled (no peers to follow)."""
        async def one_pass(periodic: bool) -> None:
            report = await self.sync()
            if report != SyncReport():
                log.info("bridge %s: repaired %s", self._net.name, report)

        await resync_forever(f"bridge {self._net.name}", one_pass, None,
                             self._resync_interval, self._retry_delay)

    async def teardown(self) -> None:
        fw = self._ctx.firewall
        await fw.remove(self._conf.bridge)
        prefix = CONTAINER_OWNER_PREFIX + port_prefix(self._conf.network)[1:]
        owners = await fw.prune(prefix, dead)
        async with route_socket(self._ctx.host_netns) as ipr:
            removed = await remove_bridge(ipr, self._conf)
        log.info("bridge %s: removed %s and rules of %d containers", self._net.name,
                 ", ".join(removed) or "nothing", len(owners))
