"""The agent's view of every network endpoint in the cluster, fed by an etcd watch.

``EndpointTable`` mirrors /berth/endpoints/ (re-listed on start and after a
compaction) and hands each overlay NetworkHost a ``PeerSource`` for its network.
DNS is fed from here too, with one rule: a remote name is served only after the
host has programmed that peer's neighbour and FDB entries (``programmed``), so
the first packet to a freshly resolved name never waits on ARP. Local names are
served at once. Owned by agent.network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agent.ports import KeyValue
from berth import keyspace
from berth.etcd import Compacted, DeleteEvent, Listing, PutEvent
from berth.records import Endpoint
from netplugins.contract import Peer

log = logging.getLogger(__name__)


def peer_of(ep: Endpoint) -> Peer:
    return Peer(ip=ep.ip, mac=ep.mac, host_ip=ep.host_ip)


class EndpointTable:
    """All endpoints by (network, container); wakes per-network waiters on change."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._eps: dict[tuple[str, str], Endpoint] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._on_change = on_change
        self.revision = 0
        self.loaded = asyncio.Event()

    def all(self) -> list[Endpoint]:
        return list(self._eps.values())

    def get(self, network: str, container: str) -> Endpoint | None:
        return self._eps.get((network, container))

    def on_network(self, network: str) -> list[Endpoint]:
        return [ep for (net, _), ep in self._eps.items() if net == network]

    def event(self, network: str) -> asyncio.Event:
        return self._changed.setdefault(network, asyncio.Event())

    def _notify(self, networks: set[str]) -> None:
        for net in networks:
            self.event(net).set()
        self._on_change()

    def replace(self, listing: Listing) -> None:
        old = set(self._eps)
        self._eps = {}
        for value, meta in listing.items:
            self._put(meta.key, value)
        self.revision = listing.revision
        self._notify({net for net, _ in old | set(self._eps)})
        self.loaded.set()

    def _put(self, key: str, value: bytes) -> str | None:
        try:
            ep = Endpoint.loads(value)
        except ValueError:
            log.warning("ignoring malformed endpoint %s", key)
            return None
        self._eps[(ep.network, ep.container)] = ep
        return ep.network

    def apply(self, event: PutEvent | DeleteEvent) -> None:
        parts = event.key[len(keyspace.ENDPOINTS) :].split("/")
        if len(parts) != 2:
            return
        if isinstance(event, PutEvent):
            self._eps.pop((parts[0], parts[1]), None)
            self._put(event.key, event.value)
        else:
            self._eps.pop((parts[0], parts[1]), None)
        self._notify({parts[0]})

    async def follow(self, etcd: KeyValue) -> None:
        """List, then watch; a compaction hands us a fresh listing to replace everything."""
        self.replace(await etcd.get_prefix(keyspace.ENDPOINTS))
        async for event in etcd.watch_prefix(keyspace.ENDPOINTS, start_revision=self.revision + 1):
            if isinstance(event, Compacted):
                self.replace(event.listing)
            else:
                self.apply(event)


class NetworkPeers:
    """The PeerSource one NetworkHost sees: its network's slice of the table.

    ``node`` set: a node-local network (bridge), whose host sees only that node's
    endpoints; the same network name on another node is another network.
    """

    def __init__(
        self, table: EndpointTable, network: str, on_programmed: Callable[[], None],
        *, node: str | None = None,
    ) -> None:
        self._table = table
        self._network = network
        self._on_programmed = on_programmed
        self._node = node
        self.programmed_peers: frozenset[Peer] = frozenset()

    async def snapshot(self) -> frozenset[Peer]:
        return frozenset(peer_of(ep) for ep in self._table.on_network(self._network)
                         if self._node is None or ep.node == self._node)

    async def wait_changed(self) -> None:
        event = self._table.event(self._network)
        await event.wait()
        event.clear()

    async def programmed(self, peers: frozenset[Peer]) -> None:
        self.programmed_peers = peers
        self._on_programmed()
