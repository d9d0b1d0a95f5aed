"""The node's own ports, closed to its containers: one owner, ``node-ports``, on the input hook.

The agent installs it at start (``Firewall.ensure_node_ports``, before any container work)
and keeps it with ``keep_node_ports``; the bridge driver asks ``NodePorts.reserved`` before
it publishes a port. Pure except ``keep_node_ports``.

Design notes
------------
What is closed. TCP to every berth and etcd port: etcd's client and peer ports (2379,
2380), the controller's gRPC and metrics ports (7700, 9101), the agent's (7071, 9102), plus
the ports this agent was configured with (its listen and metrics ports, the port of its etcd
endpoint and of its controller), so a node that moved a port keeps it closed. The controller
and etcd may run on any node and their config is not the agent's to read, so their default
ports are a fixed list; a deployment that moves them should move the agent's ``--etcd`` and
``--controller`` with them, which adds the new ports. And UDP 4789, the overlay's VXLAN
port: a container that could send to it would hand the kernel a frame for any overlay
network on this node, bypassing every rule between networks.

From where. Packets entering on berth's container-facing interfaces: the default network's
``berth0``, every bridge network's ``bb-<hex>``, which include ``berth-gwbridge`` (how an
overlay container reaches its node's addresses: its default route leads there), and the
overlay bridges ``bo-<vni>`` (they have no address, but a container can still address a
frame to the bridge's MAC). The names are bridge/config.py's and overlay/devices.py's;
tests/unit pins that they match. The input hook sees every packet for any address of this
node, whichever the container picked (the underlay IP, every bridge gateway, IPv6
link-local on the bridges: the chain is ``inet``; 127.0.0.0/8 from a bridge is already
dropped by its network's ``raw-pre``), so the rule names no address. Packets routed
through the node (to another node, to the outside, DNATed to a published port) never reach
input: they are untouched, as are ICMP and every other port.

Drop, not reject: a container learns nothing about what listens there. Every packet, not
only ``ct state new``: nothing a node's daemon does answers a container from these ports.

Other nodes. A container's packet to *another* node's berth or etcd port is routed
through this node and masqueraded: it would arrive there with this node's address, which
no rule on that node can tell from this node's own agent. And a UDP packet to another
node's VXLAN port would hand that node a frame for any of its overlay networks, from an
address it trusts as a VTEP. So the same ports are dropped on the forward hook too
(``filter-fwd`` of ``table ip berth``), from the same interfaces, to ``peers``: every
node's underlay address (the agent follows /berth/nodes/) and the hosts of its etcd
endpoints and controller. Traffic between containers never matches: on a shared bridge
or overlay it is bridged, not routed, and a container's own address is no node's.

Not covered, on purpose. ``network_mode: host`` (and joins to a host-mode container) is the
node's own stack: no firewall rule can tell it from the agent, so those ports rely on mTLS
alone. A macvlan container cannot reach its node through the parent at all; if the LAN
routes it back, it arrives on the underlay like any other machine, and mTLS answers it;
the same holds for the other nodes, which its frames reach without passing this node's
firewall.

Published ports. A container publishing host port 7071 would have its DNAT steal the
agent's (or etcd's) traffic before input sees it, so the bridge driver refuses to publish
a reserved port, with one line naming it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netplugins.firewall.rules import Base, Chain, Ruleset

if TYPE_CHECKING:
    from netplugins.firewall.firewall import Firewall

log = logging.getLogger(__name__)

OWNER = "node-ports"
# berth0 (the default network), bb-<hex> (bridge networks and berth-gwbridge), bo-<vni>.
CONTAINER_IFACES = ("berth0", "bb-*", "bo-*")
ETCD_PORTS = (2379, 2380)
CONTROLLER_PORTS = (7700, 9101)
AGENT_PORTS = (7071, 9102)
VXLAN_PORT = 4789
DEFAULT_TCP = frozenset((*ETCD_PORTS, *CONTROLLER_PORTS, *AGENT_PORTS))
DEFAULT_UDP = frozenset((VXLAN_PORT,))
KEEP_INTERVAL = 30.0


@dataclass(frozen=True)
class NodePorts:
    """The ports of this node no container may reach (always the defaults and more)."""

    tcp: frozenset[int] = DEFAULT_TCP
    udp: frozenset[int] = DEFAULT_UDP
    peers: frozenset[str] = frozenset()     # IPv4 addresses of the nodes, etcd, controller

    def __post_init__(self) -> None:
        for port in (*self.tcp, *self.udp):
            if not 0 < port < 65536:
                raise ValueError(f"not a port number: {port}")
        if not self.tcp:
            raise ValueError("no TCP port to close")
        for peer in self.peers:
            # Each one is pasted into an nft rule: only a plain dotted quad gets there.
            if str(ipaddress.IPv4Address(peer)) != peer:
                raise ValueError(f"not a plain IPv4 address: {peer!r}")

    @classmethod
    def with_tcp(cls, extra: Iterable[int]) -> NodePorts:
        """The defaults plus ``extra`` (the ports this agent was configured with)."""
        return cls(DEFAULT_TCP | frozenset(extra))

    def with_peers(self, peers: Iterable[str]) -> NodePorts:
        """The same ports, closed on ``peers`` too (forwarded packets to those hosts)."""
        return dataclasses.replace(self, peers=frozenset(peers))

    def reserved(self, port: int, protocol: str) -> bool:
        return port in (self.tcp if protocol == "tcp" else self.udp)


def _set(items: Iterable[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def node_ports_ruleset(ports: NodePorts) -> Ruleset:
    """The ``node-ports`` owner: drop TCP/UDP to ``ports`` from containers' interfaces, to
    this node (input) and, routed through it, to ``ports.peers`` (forward)."""
    ifaces = _set(f'"{name}"' for name in CONTAINER_IFACES)
    matches = [f"tcp dport {_set(sorted(ports.tcp))}"]
    if ports.udp:
        matches.append(f"udp dport {_set(sorted(ports.udp))}")
    forward: tuple[str, ...] = ()
    if ports.peers:
        peers = _set(sorted(ports.peers, key=ipaddress.IPv4Address))
        forward = tuple(f"iifname {ifaces} ip daddr {peers} {m} drop" for m in matches)
    # The forward chain exists even while it is empty: a restarted agent, which knows
    # the peers only once it has listed the nodes, refills it in place, so the table it
    # leaves is the one it found.
    return Ruleset(OWNER, (
        Chain(Base.INPUT, tuple(f"iifname {ifaces} {m} drop" for m in matches)),
        Chain(Base.FILTER_FWD, forward)))


async def keep_node_ports(fw: Firewall, interval: float = KEEP_INTERVAL) -> None:
    """Put the rules the agent last closed (``Firewall.node_ports``) back whenever someone
    removed or changed them; until cancelled."""
    while True:
        await asyncio.sleep(interval)
        ports = fw.node_ports
        if ports is not None and await fw.ensure_node_ports(ports):
            log.warning("firewall: the node's ports were open to containers; closed again")
