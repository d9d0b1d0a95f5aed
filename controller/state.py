"""One consistent read of the cluster from etcd, parsed once.

Called by scheduler.py (every pass) and server.py (Get, Exec/Logs lookups). All
prefixes are read in one transaction so the pieces agree with each other at one
revision.

A record that does not parse (a poison pill: garbage or a schema-invalid document
written into etcd behind the API) is skipped rather than stopping the scheduler, and
kept in ``ClusterState.invalid`` with the reason so that ``get`` shows it as Invalid.
Each bad key is logged once per version, not on every pass.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from berth import keyspace
from berth.errors import ManifestError
from berth.etcd import KeyValue, Listing, txn
from berth.manifest import NetworkDocument, ServiceDocument, parse_document
from berth.records import ContainerSpec, ContainerStatus, NodeRecord, load_error
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

    node: str           # from the key: the writer's own prefix
    network: str
    container: str
    mod_revision: int

    @property
    def key(self) -> str:
        return keyspace.endpoint(self.node, self.network, self.container)


@dataclass(frozen=True)
class InvalidObject:
    """A key the controller cannot process, and why (one line, no class names)."""

    kind: str           # Service | Network | Node | Container
    name: str
    key: str
    reason: str
    node: str = ""      # for a container: the node its assignment or status names


# key -> mod revision already logged: a poison pill is reported once, not every pass.
_logged: dict[str, int] = {}


def _report(found: list[InvalidObject], revisions: dict[str, int]) -> None:
    for bad in found:
        if _logged.get(bad.key) != revisions[bad.key]:
            log.warning("skipping invalid %s %s (%s): %s", bad.kind.lower(), bad.name,
                        bad.key, bad.reason)
            _logged[bad.key] = revisions[bad.key]
    for key in set(_logged) - set(revisions):
        del _logged[key]


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
    # Status and endpoint keys of another shape (the layout before per-node keys): key ->
    # mod revision; nothing reads them, the scheduler deletes them.
    stray_keys: dict[str, int] = field(default_factory=dict)
    allocations: list[Allocation] = field(default_factory=list)   # /berth/ipam/
    vnis: VniTable = field(default_factory=VniTable)
    invalid: list[InvalidObject] = field(default_factory=list)

    def invalid_of(self, kind: str) -> list[InvalidObject]:
        return [i for i in self.invalid if i.kind == kind]

    def assignment(self, container: str) -> Assignment | None:
        return next((a for a in self.assignments if a.spec.name == container), None)

    def containers_on(self, node: str) -> int:
        return sum(1 for a in self.assignments if a.node == node)


async def read_state(etcd: KeyValue) -> ClusterState:
    """Everything the scheduler and Get need, at one revision."""
    ok, responses = await etcd.transaction([], [txn.get_prefix(p) for p in _PREFIXES])
    listings = [r for r in responses if isinstance(r, Listing)]
    if not ok or len(listings) != len(_PREFIXES):
        raise RuntimeError("etcd answered a read-only transaction without its listings")
    services, networks, nodes, assign, status, endpoints, ipam, netstate, vni = listings
    state = ClusterState(revision=max(item.revision for item in listings))
    revisions: dict[str, int] = {}

    def bad(kind: str, key: str, mod_revision: int, reason: str, node: str = "") -> None:
        state.invalid.append(InvalidObject(kind, keyspace.last_segment(key), key, reason, node))
        revisions[key] = mod_revision

    for value, meta in services.items:
        try:
            doc = parse_document("Service", value)
        except ManifestError as exc:
            bad("Service", meta.key, meta.mod_revision, _manifest_reason(exc))
            continue
        if isinstance(doc, ServiceDocument):
            state.services[doc.name] = DesiredService(doc, meta.mod_revision)
    for value, meta in networks.items:
        try:
            net = parse_document("Network", value)
        except ManifestError as exc:
            bad("Network", meta.key, meta.mod_revision, _manifest_reason(exc))
            continue
        if isinstance(net, NetworkDocument):
            state.networks[net.name] = net
            state.network_revisions[net.name] = meta.mod_revision
    for value, meta in nodes.items:
        try:
            state.nodes[keyspace.last_segment(meta.key)] = NodeRecord.loads(value)
        except ValidationError as exc:
            bad("Node", meta.key, meta.mod_revision, f"node record: {load_error(exc)}")
    for value, meta in assign.items:
        node = meta.key.removeprefix(keyspace.ASSIGN).split("/", 1)[0]
        try:
            spec = ContainerSpec.loads(value)
        except ValidationError as exc:
            bad("Container", meta.key, meta.mod_revision, f"assignment: {load_error(exc)}",
                node)
            continue
        state.assignments.append(Assignment(node, spec, meta.mod_revision))
    _read_statuses(state, status, bad)
    for _, meta in endpoints.items:
        where = keyspace.parse_endpoint(meta.key)
        if where is None:
            state.stray_keys[meta.key] = meta.mod_revision
            continue
        node, network, container = where
        state.endpoints[network] += 1
        state.endpoint_keys.append(EndpointKey(node, network, container, meta.mod_revision))
    state.allocations.extend(parse_allocations(ipam))
    _report(state.invalid, revisions)
    return replace(state, vnis=VniTable.parse(netstate, vni))


def _read_statuses(
    state: ClusterState, listing: Listing, bad: Callable[[str, str, int, str, str], None]
) -> None:
    """Each container's status as reported by the node it is assigned to.

    Statuses live under their writer's node (/berth/status/<node>/<container>), so a
    container that moved, or a node that reports a name it was never given, has more
    than one. The assigned node's copy wins; an unassigned container (being removed)
    keeps any node's copy so that ``get`` can show it as removing. The key names the
    node, whatever the record says.
    """
    assigned = {a.spec.name: a.node for a in state.assignments}
    for value, meta in listing.items:
        where = keyspace.parse_status(meta.key)
        if where is None:
            state.stray_keys[meta.key] = meta.mod_revision
            continue
        node, name = where
        home = assigned.get(name)
        if home is not None and home != node:
            continue
        try:
            status = ContainerStatus.loads(value)
        except ValidationError as exc:
            bad("Container", meta.key, meta.mod_revision, f"status: {load_error(exc)}", node)
            continue
        if status.name != name or status.node != node:
            bad("Container", meta.key, meta.mod_revision,
                f'status: the record names container "{status.name}" on node "{status.node}"',
                node)
            continue
        state.statuses[name] = status


def _manifest_reason(exc: ManifestError) -> str:
    # parse_document says "stored Service: PATH: problem"; the row already names the kind.
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("stored ") and ": " in text else text
