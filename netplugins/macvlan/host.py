"""MacvlanHost: the host-wide half of the macvlan driver, one per network per host.

The agent creates it for each macvlan network with endpoints on this host, calls
``ensure()`` before the first ADD, runs ``run(peers)`` as a task, and calls ``teardown()``
after the last local endpoint is gone.

Design notes
------------
Shape. Each container gets a macvlan device on the network's ``parent`` (``options.parent``),
in the network's mode (``options.mode``: bridge by default, vepa, private or passthru), with
its own MAC and an address on the LAN the parent is on. There is no bridge, no tunnel and no
host-side veth: containers on different hosts meet on the underlay LAN as if they were
hosts, and the LAN's own gateway (``NetConf.gateway``) carries the default route when the
attachment asks for it. ADD creates the device straight inside the container's namespace
(the kernel looks the parent up in the caller's namespace), so a crash never leaves a
device behind in the host's.

Modes. bridge: macvlans on one parent reach each other inside the kernel. private: they
cannot, even if the switch sends frames back. vepa: every frame goes out to the switch,
which must hairpin it for two containers on one host to talk (802.1Qbg). passthru: one
macvlan takes the whole parent; it keeps the parent's MAC, because setting another would
rewrite the MAC of the host's NIC, so ``Attachment.mac`` is not used and the result holds the
real one. Like Docker, the host itself cannot reach its own containers through the parent:
macvlan frames from the parent's own stack are not looped back.

MTU. ``NetConf.mtu`` if set, else the parent's; never above the parent's, which the kernel
refuses anyway. No encapsulation, so nothing is subtracted.

802.1q. A parent named ``<base>.<vid>`` (``eth0.10``) that does not exist is created as VLAN
``vid`` on ``base`` and marked as berth's with IFLA_IFALIAS ``berth:vlan``. A parent that
exists is used as it is, whatever created it. On teardown berth deletes only a parent that
carries that mark, and only when nothing uses it any more. "Uses" is read from the kernel,
not from files: each network on an owned parent holds a reference device on it,
``mvr<sha256(network)[:12]>`` (a macvlan in private mode, always down, IFLA_IFALIAS
``berth:macvlan-ref <network>``), made by ``ensure`` (and ADD) and dropped by ``teardown``.
The container macvlans cannot serve as the count: they live in container namespaces, where
the host cannot list them. Teardown keeps the parent while any device in the host's
namespace sits on it (another network's reference, or anything an operator added), while it
is a port of another device, while it has an address other than IPv6 link-local, or while a
passthru macvlan holds it (a passthru network holds no reference, since the kernel allows a
passthru parent exactly one macvlan; teardown finds it by asking the kernel for a probe
macvlan, which it refuses with EINVAL exactly then). Reference devices die with the host's
namespace and need no state dir, and a person sees them with ``ip -d link``. ensure,
ADD's device creation and teardown of one parent run under one lock per parent, so a
teardown never deletes a sub-interface between another network's ensure and its ADD.

Errors a person sees. A parent that does not exist (ParentMissingError), one the kernel
will not put a macvlan on (ParentUnusableError) and a kernel without 802.1q
(VlanUnsupportedError: the kernel answers EOPNOTSUPP for ``kind vlan``) are all
ParentUnavailableError, whose one-line message the agent shows as the replica's reason.

Peers. Nothing is programmed per peer: ARP works on the LAN. ``run`` still tells the
PeerSource that every remote peer is reachable after each pass, because the agent serves a
remote name in DNS only once the network's host says so.
"""

from __future__ import annotations

import logging

from netplugins.contract import HostContext, NetConf, Peer, PeerSource
from netplugins.macvlan.config import parse
from netplugins.macvlan.parent import ensure_anchor, ensure_parent, parent_lock, release_parent
from netplugins.netlink import route_socket
from netplugins.resync import resync_forever

log = logging.getLogger(__name__)


class MacvlanHost:
    """The parent, its VLAN sub-interface and this network's reference on one host."""

    def __init__(
        self,
        net: NetConf,
        ctx: HostContext,
        *,
        resync_interval: float = 30.0,
        retry_delay: float = 1.0,
    ) -> None:
        self._conf = parse(net)
        self._net = net
        self._ctx = ctx
        self._resync_interval = resync_interval
        self._retry_delay = retry_delay

    @property
    def network(self) -> NetConf:
        return self._net

    async def ensure(self) -> None:
        """Create or repair the parent's sub-interface (if it is one to create) and this
        network's reference on it. Idempotent."""
        conf = self._conf
        async with (route_socket(self._ctx.host_netns) as ipr,
                    parent_lock(self._ctx.host_netns, conf.parent)):
            parent = await ensure_parent(ipr, conf)
            anchored = await ensure_anchor(ipr, conf, parent)
        made = [*parent.created, *(["its reference"] if anchored else [])]
        if made:
            log.info("macvlan %s: created %s", conf.network, ", ".join(made))

    async def run(self, peers: PeerSource) -> None:
        """Repair on every wake-up and every ``resync_interval`` until cancelled."""
        async def one_pass(periodic: bool) -> None:
            await self.ensure()
            await peers.programmed(self._remote(await peers.snapshot()))

        await resync_forever(f"macvlan {self._net.name}", one_pass, peers.wait_changed,
                             self._resync_interval, self._retry_delay)

    def _remote(self, peers: frozenset[Peer]) -> frozenset[Peer]:
        return frozenset(p for p in peers if p.host_ip != self._ctx.underlay.ip)

    async def teardown(self) -> None:
        """Drop this network's reference, and the sub-interface if berth made it and this
        was its last user. Idempotent."""
        conf = self._conf
        async with (route_socket(self._ctx.host_netns) as ipr,
                    parent_lock(self._ctx.host_netns, conf.parent)):
            deleted = await release_parent(ipr, conf)
        if deleted:
            log.info("macvlan %s: removed %s", conf.network, ", ".join(deleted))
