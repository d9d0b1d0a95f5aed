"""OverlayHost: the host-wide half of the VXLAN overlay driver, one per network per host.

The agent creates it for each overlay network that has endpoints on this host, runs
``run(peers)`` as a task, and calls ``teardown()`` after the last local endpoint is gone.

Design notes
------------
Shape. Each network is one L2 segment: a Linux bridge ``bo-<vni>`` per host with the
containers' veths and one VXLAN device ``vx-<vni>`` (VNI = the network's, UDP 4789, bound
to the underlay address and interface) as ports. The bridge has no IP address: containers
talk to each other at L2, and the network's gateway address is only reserved by IPAM.

Why learning is off. With learning (and a multicast group or flood list) the kernel
discovers remote MACs by flooding broadcast/unknown frames to every host, so the first
packet to a new peer waits on a flood and an answer; entries then age out and relearn. The
endpoint registry in etcd already knows every container's IP, MAC and host, so like
flannel's current vxlan backend (no L2/L3 miss callouts) and libnetwork's overlay, we program
that knowledge and never flood: there is no all-zeros FDB entry, so broadcast and unknown
unicast stop at the VXLAN device. ``nolearning`` also stops a spoofed inner source MAC from
redirecting traffic.

Why static neighbour and FDB entries, and proxy ARP. For each remote endpoint we install a
permanent ARP entry (ip -> mac) and an FDB entry (mac -> dst host underlay IP) on the VXLAN
device. The device runs with ``proxy`` on, so a container's ARP request that reaches it is
answered locally from that ARP entry (libnetwork does the same); the frame then finds its
tunnel destination in the FDB. Nothing waits on the network, so the first packet to a peer
leaves at once. That is only true once the entries exist, which is why ``run`` tells the
PeerSource which peers are programmed: the agent must announce a remote name in DNS only
after that (Docker Swarm pays ~0.75 s on the first packet for doing it the other way round).
FDB entries are written before ARP entries, and ARP entries removed before FDB entries, so
a resolved neighbour always has a tunnel. Local endpoints need no entries: the bridge
learns their MACs on their own ports.

Why the MTU is the underlay MTU minus 50. VXLAN adds an outer Ethernet (14), IPv4 (20),
UDP (8) and VXLAN (8) header. The underlay does not fragment for us, so the bridge, the
VXLAN device and every container veth get ``underlay MTU - 50`` (or the network's
explicit, smaller MTU) and the container's TCP stack sizes segments to fit.

Why replace semantics. ``ip neigh replace`` / ``bridge fdb replace`` (NLM_F_REPLACE)
create or overwrite in one call, so programming is idempotent and a moved peer (same IP
and MAC, new host) is updated without a window where it is missing. MACs are derived from
IPs, so a reused IP maps to the same MAC and never leaves a stale entry behind.

Why resync. Watches lose events (agent restarts, etcd compactions), and other actors can
delete our devices or entries. So every pass is level-triggered: read the kernel's
neighbour and FDB tables via netlink, diff them with the full peer snapshot
(fdb.plan_sync), and repair; recreate ``bo-``/``vx-`` devices that vanished. Passes run
on every wake-up from the PeerSource and at least every ``resync_interval`` seconds; a
failed pass is retried after ``retry_delay`` doubling up to the interval.

Why a firewall owner. With br_netfilter (built into this kernel, on by default in every
netns), frames bridged between the VXLAN device and the containers' veths cross iptables'
FORWARD chain, whose policy Docker sets to DROP. So the host registers ``bo-<vni>`` with
the node's firewall as an owner with no rules but the bridge as an accepted interface:
the firewall inserts the accepts only where FORWARD drops, and removes exactly those on
teardown. It is applied by ``ensure``, after a pass that recreated devices, and on the
periodic resync (not on every peer change: that path must stay free of subprocesses).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from netplugins.contract import HostContext, NetConf, Peer, PeerSource
from netplugins.firewall import Ruleset
from netplugins.netlink import link_index, route_socket
from netplugins.overlay.devices import (
    bridge_name,
    ensure_devices,
    remove_devices,
    validate,
    vxlan_name,
)
from netplugins.overlay.fdb import SyncPlan, apply_plan, plan_sync, read_entries, remote_peers
from netplugins.resync import resync_forever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncReport:
    """What one sync pass did; ``programmed`` are the remote peers now in the kernel."""

    recreated: tuple[str, ...]
    plan: SyncPlan
    programmed: frozenset[Peer]


class OverlayHost:
    """Bridge, VXLAN device and peer entries of one overlay network on this host."""

    def __init__(
        self,
        net: NetConf,
        ctx: HostContext,
        *,
        resync_interval: float = 30.0,
        retry_delay: float = 1.0,
    ) -> None:
        validate(net)
        self._net = net
        self._ctx = ctx
        self._resync_interval = resync_interval
        self._retry_delay = retry_delay
        self._lock = asyncio.Lock()

    @property
    def network(self) -> NetConf:
        return self._net

    def _accepts(self) -> Ruleset:
        bridge = bridge_name(self._net.vni)
        return Ruleset(bridge, accept_ifaces=(bridge,))

    async def ensure(self) -> None:
        async with route_socket(self._ctx.host_netns) as ipr:
            recreated = await ensure_devices(ipr, self._net, self._ctx.underlay)
        if recreated:
            log.info("overlay %s: created %s", self._net.name, ", ".join(recreated))
        await self._ctx.firewall.apply(self._accepts())

    async def sync(self, peers: Iterable[Peer]) -> SyncReport:
        """One level-triggered pass: repair devices, then make the entries match ``peers``."""
        underlay = self._ctx.underlay
        async with self._lock, route_socket(self._ctx.host_netns) as ipr:
            recreated = await ensure_devices(ipr, self._net, underlay)
            vx_index = await link_index(ipr, vxlan_name(self._net.vni))
            assert vx_index is not None, "ensure_devices just made it"
            peers = frozenset(peers)
            neigh, fdb = await read_entries(ipr, vx_index)
            plan = plan_sync(peers, underlay.ip, neigh, fdb)
            await apply_plan(ipr, vx_index, plan)
        if recreated or not plan.empty:
            log.info(
                "overlay %s: recreated=%s fdb+%d arp+%d arp-%d fdb-%d", self._net.name,
                list(recreated), len(plan.fdb_replace), len(plan.neigh_replace),
                len(plan.neigh_delete), len(plan.fdb_delete),
            )
        if recreated:
            await self._ctx.firewall.apply(self._accepts())
        programmed = frozenset(remote_peers(peers, underlay.ip).values())
        return SyncReport(tuple(recreated), plan, programmed)

    async def run(self, peers: PeerSource) -> None:
        """Sync on every wake-up and every ``resync_interval`` until cancelled."""
        async def one_pass(periodic: bool) -> None:
            report = await self.sync(await peers.snapshot())
            await peers.programmed(report.programmed)
            if periodic:
                await self._ctx.firewall.apply(self._accepts())

        await resync_forever(f"overlay {self._net.name}", one_pass, peers.wait_changed,
                             self._resync_interval, self._retry_delay)

    async def teardown(self) -> None:
        async with self._lock, route_socket(self._ctx.host_netns) as ipr:
            await remove_devices(ipr, self._net.vni)
        await self._ctx.firewall.remove(bridge_name(self._net.vni))
        log.info("overlay %s: removed host devices", self._net.name)
