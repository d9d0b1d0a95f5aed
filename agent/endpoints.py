"""The agent's view of every network endpoint in the cluster, fed by two etcd watches.

``EndpointTable`` mirrors /berth/endpoints/ and the keys of /berth/assign/ (each
re-listed on start and after a compaction) and hands each overlay NetworkHost a
``PeerSource`` for its network.

Trust (design notes): endpoints live under their writer's node,
/berth/endpoints/<node>/<network>/<container>, and etcd RBAC lets a node write only
its own prefix. That alone does not stop a node from publishing a name it does not
run, under its own prefix. So a remote endpoint counts only while the controller has
assigned that container to that node (/berth/assign/<node>/<container>), as
Kubernetes trusts a pod's status only from the node it is bound to. A record whose
body names another node than its key is ignored. This node's own endpoints count at
once: the agent wrote them for containers it runs. While a container moves, the old
node's copy stops counting when its assignment goes (the controller deletes both in
one transaction), so peers and DNS never see two homes for one name.

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
from berth.etcd import DeleteEvent, Listing, PutEvent, follow_prefix
from berth.records import Endpoint
from netplugins.contract import Peer

log = logging.getLogger(__name__)

_EpKey = tuple[str, str, str]      # (node, network, container), as in the key


def peer_of(ep: Endpoint) -> Peer:
    return Peer(ip=ep.ip, mac=ep.mac, host_ip=ep.host_ip)


class EndpointTable:
    """All endpoints by (node, network, container); wakes per-network waiters on change."""

    def __init__(self, on_change: Callable[[], None], *, node: str = "") -> None:
        self._eps: dict[_EpKey, Endpoint] = {}
        self._placed: set[tuple[str, str]] = set()     # (node, container) assigned
        self._changed: dict[str, asyncio.Event] = {}
        self._on_change = on_change
        self._node = node
        self.revision = 0           # of the endpoint mirror
        self.loaded = asyncio.Event()

    def _trusted(self, key: _EpKey) -> bool:
        node, _, container = key
        return node == self._node or (node, container) in self._placed

    def all(self) -> list[Endpoint]:
        """The endpoints that count: this node's, and others' assigned containers'."""
        return [ep for key, ep in self._eps.items() if self._trusted(key)]

    def get(self, network: str, container: str) -> Endpoint | None:
        """The endpoint that counts for CONTAINER on NETWORK, if any."""
        return next((ep for key, ep in self._eps.items()
                     if key[1:] == (network, container) and self._trusted(key)), None)

    def written(self, node: str, network: str, container: str) -> Endpoint | None:
        """What NODE's key for CONTAINER on NETWORK holds, trusted or not."""
        return self._eps.get((node, network, container))

    def on_network(self, network: str) -> list[Endpoint]:
        return [ep for key, ep in self._eps.items() if key[1] == network and self._trusted(key)]

    def event(self, network: str) -> asyncio.Event:
        return self._changed.setdefault(network, asyncio.Event())

    def _notify(self, networks: set[str]) -> None:
        for net in networks:
            self.event(net).set()
        self._on_change()

    def _networks_of(self, container: str) -> set[str]:
        return {net for (_, net, name) in self._eps if name == container}

    def replace(self, listing: Listing) -> None:
        """A fresh listing of /berth/endpoints/."""
        old = {net for _, net, _ in self._eps}
        self._eps = {}
        for value, meta in listing.items:
            self._put(meta.key, value)
        self.revision = listing.revision
        self._notify(old | {net for _, net, _ in self._eps})
        self.loaded.set()

    def replace_placements(self, listing: Listing) -> None:
        """A fresh listing of /berth/assign/ (only the keys matter)."""
        parsed = (keyspace.parse_assign(meta.key) for _, meta in listing.items)
        self._placed = {p for p in parsed if p is not None}
        self._notify({net for _, net, _ in self._eps})

    def _put(self, key: str, value: bytes) -> str | None:
        where = keyspace.parse_endpoint(key)
        if where is None:
            return None
        try:
            ep = Endpoint.loads(value)
        except ValueError:
            log.warning("ignoring malformed endpoint %s", key)
            return None
        if (ep.node, ep.network, ep.container) != where:
            log.warning("ignoring endpoint %s: its record names %s/%s on node %s",
                        key, ep.network, ep.container, ep.node)
            return None
        self._eps[where] = ep
        return ep.network

    def apply(self, event: PutEvent | DeleteEvent) -> None:
        """One watch event of either mirror (endpoints or assignments)."""
        placed = keyspace.parse_assign(event.key)
        if placed is not None:
            if isinstance(event, PutEvent):
                self._placed.add(placed)
            else:
                self._placed.discard(placed)
            self._notify(self._networks_of(placed[1]))
            return
        where = keyspace.parse_endpoint(event.key)
        if where is None:
            return
        self._eps.pop(where, None)
        if isinstance(event, PutEvent):
            self._put(event.key, event.value)
        self._notify({where[1]})

    async def follow(self, etcd: KeyValue) -> None:
        """Both mirrors at once; if one watch fails, both end (and are restarted)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(etcd, keyspace.ASSIGN, self.replace_placements))
            group.create_task(self._follow(etcd, keyspace.ENDPOINTS, self.replace))

    async def _follow(
        self, etcd: KeyValue, prefix: str, replace: Callable[[Listing], None]
    ) -> None:
        """List, then watch; a compaction hands us a fresh listing to replace everything."""
        def apply(event: PutEvent | DeleteEvent) -> None:
            self.apply(event)
            if prefix == keyspace.ENDPOINTS:
                self.revision = max(self.revision, event.meta.mod_revision)

        await follow_prefix(etcd, prefix, replace, apply)


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
