"""The address space of one network (on one node, for node-local ones).

Called by ipam.py (which address an attachment gets) and placement.py (whether a node's
copy of a node-local network has room). Pure functions of the Network document and the
node records.

Where addresses come from: a network's ``ip_range`` (else its subnet), never its
network, broadcast or gateway address, nor an ``aux_addresses`` entry, nor (on macvlan,
which shares a real LAN) a Ready node's own address on that LAN. The implicit networks
``bridge`` and ``berth-gwbridge`` take their subnet and gateway from the node's record
(``NodeRecord.bip``/``gwbridge``); an attachment on a node that is not Ready keeps the
subnet it has.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from berth.errors import PermanentError
from berth.manifest import NetworkDocument
from berth.netaddr import reserved
from berth.records import NetworkAttachment, NodeRecord


class AddressError(PermanentError):
    """No address can be given: subnet full, static ip taken, network or VNI missing.

    The scheduler records the message as the container's pending reason.
    """


@dataclass(frozen=True)
class AddressSpace:
    """Where one attachment's address comes from (see the module docstring)."""

    subnet: ipaddress.IPv4Network
    gateway: str
    pool: ipaddress.IPv4Network
    excluded: frozenset[ipaddress.IPv4Address] = frozenset()
    node: str = ""          # node-local: the node whose copy of the subnet this is

    def never(self) -> frozenset[ipaddress.IPv4Address]:
        return reserved(self.subnet, self.gateway) | self.excluded

    def usable(self, ip: str) -> bool:
        """A static or current address: anywhere in the subnet but never reserved."""
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return addr in self.subnet and addr not in self.never()

    def candidates(self) -> Iterable[ipaddress.IPv4Address]:
        skip = self.never()
        return (ip for ip in self.pool if ip not in skip)

    def capacity(self) -> int:
        return self.pool.num_addresses - sum(1 for ip in self.never() if ip in self.pool)


def network_space(net: NetworkDocument, nodes: Mapping[str, NodeRecord],
                  node: str = "") -> AddressSpace:
    """The address space of a Network document (on ``node`` when it is node-local)."""
    spec = net.spec
    subnet = spec.network()
    excluded = {ipaddress.IPv4Address(ip) for ip in spec.aux_addresses.values()}
    if spec.driver == "macvlan":
        # The LAN's own hosts: the nodes' addresses on it are not free for containers.
        for record in nodes.values():
            for prefix in record.addresses:
                try:
                    addr = ipaddress.IPv4Interface(prefix.cidr).ip
                except ValueError:
                    continue
                if addr in subnet:
                    excluded.add(addr)
    return AddressSpace(subnet, spec.gateway or "", spec.pool(), frozenset(excluded),
                        node if spec.node_local else "")


def implicit_space(att: NetworkAttachment, node: str,
                   nodes: Mapping[str, NodeRecord]) -> AddressSpace:
    """The address space of ``bridge`` or ``berth-gwbridge`` on ``node``."""
    record = nodes.get(node)
    iface = record.implicit_network(att.network) if record is not None else None
    if iface is None and record is None and att.ip and att.prefixlen:
        # The node is not Ready: keep what the attachment has until it is back.
        iface = ipaddress.IPv4Interface(f"{att.gateway or att.ip}/{att.prefixlen}")
    if iface is None:
        why = "is not Ready" if record is None else (
            f"reports no subnet for {att.network} (its agent predates it)")
        raise AddressError(f"network {att.network}: node {node} {why}")
    return AddressSpace(iface.network, str(iface.ip), iface.network, node=node)
