"""Which ports the agent closes to containers, and on which hosts, from its own
configuration and from the cluster's nodes.

Called by agent.main at start; the rules and why are netplugins.firewall.nodeports'. The
fixed defaults (etcd 2379/2380, controller 7700/9101, agent 7071/9102) are always closed;
to them come the ports this agent was told to use: its listen and metrics ports, and the
ports of its etcd endpoints and its controller (where those run on this node, that is
where they listen). The same ports are closed on the other hosts of the cluster, reached
through this node (``follow_peers``): every node's underlay address, from /berth/nodes/,
and the hosts of the agent's etcd and controller addresses when those are IP addresses.
A node record is hostile input: an address that is not a plain IPv4 address is logged
and left out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from agent.config import AgentConfig
from berth import keyspace
from berth.etcd import DeleteEvent, KeyValue, Listing, PutEvent, follow_prefix
from berth.records import NodeRecord
from netplugins.firewall import Firewall, NodePorts

log = logging.getLogger(__name__)


def _split(address: str) -> SplitResult:
    address = address.strip()
    return urlsplit(address if "://" in address else f"//{address}")


def port_of(address: str) -> int | None:
    """The port of ``HOST:PORT``, ``[V6]:PORT`` or ``scheme://HOST:PORT``; None if none."""
    try:
        port = _split(address).port
    except ValueError:
        return None
    return port if port else None


def ipv4_host_of(address: str) -> str | None:
    """The host of such an address when it is a plain IPv4 address; else None."""
    host = _split(address).hostname or ""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return None


def configured_ports(addresses: Iterable[str]) -> list[int]:
    found = (port_of(a) for addr in addresses for a in addr.split(","))
    return sorted({p for p in found if p is not None})


def node_ports(cfg: AgentConfig) -> NodePorts:
    return NodePorts.with_tcp(configured_ports(
        (cfg.listen, cfg.metrics_listen, cfg.controller, cfg.etcd.endpoint)))


def static_peers(cfg: AgentConfig) -> frozenset[str]:
    """The etcd endpoints' and the controller's hosts, where the agent has their IPs."""
    found = (ipv4_host_of(a) for addr in (cfg.controller, cfg.etcd.endpoint)
             for a in addr.split(","))
    return frozenset(h for h in found if h is not None)


def node_address(key: str, raw: bytes) -> str | None:
    """A node record's underlay address, if it is a plain IPv4 address."""
    try:
        address = NodeRecord.loads(raw).address
    except ValueError:
        log.warning("node ports: ignoring malformed node record %s", key)
        return None
    if ipv4_host_of(address) != address:
        log.warning("node ports: ignoring node record %s: address %r is not an IPv4 "
                    "address", key, address)
        return None
    return address


class Peers:
    """The hosts whose ports are closed: ``static`` plus every node's address in etcd."""

    def __init__(self, static: frozenset[str]) -> None:
        self._static = static
        self._nodes: dict[str, str] = {}

    def addresses(self) -> frozenset[str]:
        return self._static | frozenset(self._nodes.values())

    def replace(self, listing: Listing) -> None:
        self._nodes = {}
        for raw, meta in listing.items:
            self._put(meta.key, raw)

    def apply(self, event: PutEvent | DeleteEvent) -> None:
        self._nodes.pop(event.key, None)
        if isinstance(event, PutEvent):
            self._put(event.key, event.value)

    def _put(self, key: str, raw: bytes) -> None:
        address = node_address(key, raw)
        if address is not None:
            self._nodes[key] = address


async def follow_peers(etcd: KeyValue, firewall: Firewall, ports: NodePorts,
                       static: frozenset[str]) -> None:
    """Close ``ports`` on every peer as nodes come and go; until the watch fails."""
    peers = Peers(static)
    changed = asyncio.Event()

    def replace(listing: Listing) -> None:
        peers.replace(listing)
        changed.set()

    def apply(event: PutEvent | DeleteEvent) -> None:
        peers.apply(event)
        changed.set()

    async def close_on_change() -> None:
        while True:
            await changed.wait()
            changed.clear()
            wanted = ports.with_peers(peers.addresses())
            if firewall.node_ports != wanted:
                await firewall.ensure_node_ports(wanted)
                log.info("closed to containers on %d hosts: %s", len(wanted.peers),
                         ", ".join(sorted(wanted.peers, key=ipaddress.IPv4Address)))

    # A failed firewall change ends the watch too (and the other way round): the agent's
    # supervisor restarts both, from a fresh listing.
    async with asyncio.TaskGroup() as group:
        closer = group.create_task(close_on_change(), name="node-ports-peers")
        await follow_prefix(etcd, keyspace.NODES, replace, apply)
        closer.cancel()
