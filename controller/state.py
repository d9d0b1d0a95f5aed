"""One consistent read of the cluster from etcd, parsed once.

Called by scheduler.py (every pass) and server.py (Get, Exec/Logs lookups). All
prefixes are read in one transaction so the pieces agree with each other at one
revision. A record that does not parse is skipped with a warning rather than
stopping the scheduler: one bad key must not freeze the cluster.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from berth import keyspace
from berth.errors import ManifestError
from berth.etcd import Etcd3Client, Listing, txn
from berth.manifest import NetworkDocument, ServiceDocument, parse_document
from berth.records import ContainerSpec, ContainerStatus, Endpoint, NodeRecord
from controller.ipam import Allocation, parse_allocations
from controller.placement import Assignment, DesiredService
from controller.vni import VniTable

log = logging.getLogger(__name__)

_PREFIXES = (
    keyspace.desired_prefix("Service"),
    keyspace.desired_prefix("Network"),
    keyspace.NODES,
    keyspace.ASSIGN,
    keyspace.STATUS,
    keyspace.ENDPOINTS,
    keyspace.IPAM,
    keyspace.NETSTATE,
    keyspace.VNI,
)


@dataclass(frozen=True)
class EndpointKey:
    """One /berth/endpoints key as read: enough to collect it when its container is gone."""

    network: str
    container: str
    node: str           # "" when the record does not parse
    mod_revision: int

    @property
    def key(self) -> str:
        return keyspace.endpoint(self.network, self.container)


@dataclass(frozen=True)
class ClusterState:
    revision: int
    services: dict[str, DesiredService] = field(default_factory=dict)
    networks: dict[str, NetworkDocument] = field(default_factory=dict)
    network_revisions: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    assignments: list[Assignment] = field(default_factory=list)
    statuses: dict[str, ContainerStatus] = field(default_factory=dict)
    endpoints: Counter[str] = field(default_factory=Counter)   # network -> endpoint count
    endpoint_keys: list[EndpointKey] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)   # /berth/ipam/
    vnis: VniTable = field(default_factory=VniTable)

    def assignment(self, container: str) -> Assignment | None:
        return next((a for a in self.assignments if a.spec.name == container), None)

    def containers_on(self, node: str) -> int:
        return sum(1 for a in self.assignments if a.node == node)


async def read_state(etcd: Etcd3Client) -> ClusterState:
    """Everything the scheduler and Get need, at one revision."""
    ok, responses = await etcd.transaction([], [txn.get_prefix(p) for p in _PREFIXES])
    listings = [r for r in responses if isinstance(r, Listing)]
    if not ok or len(listings) != len(_PREFIXES):
        raise RuntimeError("etcd answered a read-only transaction without its listings")
    services, networks, nodes, assign, status, endpoints, ipam, netstate, vni = listings
    state = ClusterState(revision=max(item.revision for item in listings))
    for value, meta in services.items:
        doc = _parse("Service", value, meta.key)
        if isinstance(doc, ServiceDocument):
            state.services[doc.name] = DesiredService(doc, meta.mod_revision)
    for value, meta in networks.items:
        net = _parse("Network", value, meta.key)
        if isinstance(net, NetworkDocument):
            state.networks[net.name] = net
            state.network_revisions[net.name] = meta.mod_revision
    for value, meta in nodes.items:
        try:
            state.nodes[keyspace.last_segment(meta.key)] = NodeRecord.loads(value)
        except ValidationError as exc:
            log.warning("skipping unreadable node record %s: %s", meta.key, exc)
    for value, meta in assign.items:
        try:
            spec = ContainerSpec.loads(value)
        except ValidationError as exc:
            log.warning("skipping unreadable assignment %s: %s", meta.key, exc)
            continue
        node = meta.key.removeprefix(keyspace.ASSIGN).split("/", 1)[0]
        state.assignments.append(Assignment(node, spec, meta.mod_revision))
    for value, meta in status.items:
        try:
            state.statuses[keyspace.last_segment(meta.key)] = ContainerStatus.loads(value)
        except ValidationError as exc:
            log.warning("skipping unreadable status %s: %s", meta.key, exc)
    for value, meta in endpoints.items:
        network, _, container = meta.key.removeprefix(keyspace.ENDPOINTS).partition("/")
        state.endpoints[network] += 1
        state.endpoint_keys.append(EndpointKey(network, container, _endpoint_node(value),
                                               meta.mod_revision))
    state.allocations.extend(parse_allocations(ipam))
    return replace(state, vnis=VniTable.parse(netstate, vni))


def _endpoint_node(value: bytes) -> str:
    try:
        return Endpoint.loads(value).node
    except ValidationError:
        return ""


def _parse(kind: str, value: bytes, key: str) -> NetworkDocument | ServiceDocument | None:
    try:
        return parse_document(kind, value)
    except ManifestError as exc:
        log.warning("skipping unreadable desired %s %s: %s", kind, key, exc)
        return None
