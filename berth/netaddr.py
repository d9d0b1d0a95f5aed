"""IPv4 address helpers shared by the controller's IPAM and anything that must agree with it.

Owned by berth so the controller can derive container MACs without importing netplugins
(import-linter forbids it). ``mac_from_ip`` is the one definition: the controller's IPAM
decides a container's MAC with it, peers program neighbour/FDB entries from that MAC, and
drivers (through netplugins.contract, which re-exports it) set the same MAC on the
interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator


def mac_from_ip(ip: str) -> str:
    """Docker's MAC for an IPv4 address: ``02:42`` then the four address bytes.

    Deriving the MAC from the IP means a peer's neighbour and FDB entries are a function of
    its IP alone: when an IP is released and reused, the old entries are already right, and
    a stale MAC can never linger in a remote ARP cache. For IPv6 the last four bytes are used.
    """
    try:
        packed = ipaddress.ip_address(ip).packed
    except ValueError as exc:
        raise ValueError(f"cannot derive a MAC: {ip!r} is not an IP address") from exc
    return "02:42:" + ":".join(f"{b:02x}" for b in packed[-4:])


def reserved(subnet: ipaddress.IPv4Network, gateway: str) -> frozenset[ipaddress.IPv4Address]:
    """Addresses never handed to a container: network, broadcast and the gateway."""
    out = {subnet.network_address, subnet.broadcast_address}
    if gateway:
        out.add(ipaddress.IPv4Address(gateway))
    return frozenset(out)


def assignable(subnet: ipaddress.IPv4Network, gateway: str) -> Iterator[ipaddress.IPv4Address]:
    """Host addresses of ``subnet`` a container may get, lowest first."""
    skip = reserved(subnet, gateway)
    return (ip for ip in subnet if ip not in skip)


def is_assignable(ip: str, subnet: ipaddress.IPv4Network, gateway: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return addr in subnet and addr not in reserved(subnet, gateway)
