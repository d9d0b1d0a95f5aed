"""Pure scheduling decisions: from desired services, Ready nodes and current assignments
to the actions that make them agree. No I/O here, so every rule is unit-testable.

Called by scheduler.py (each pass) and getters.py (Get shows why a container is pending).

Rules:
- A Service with replicas N has containers ``<name>-1`` .. ``<name>-N``.
- An unassigned container goes to ``placement.node`` when set (pending with a
  reason while that node is not Ready), otherwise to the Ready node with the
  fewest containers, counting this pass's own placements (spread); ties by name.
- An assigned container whose spec changed gets ``generation + 1``; one whose
  service is gone or scaled down, or whose pinned node changed, is removed.
- A container on a node that is no longer Ready keeps its assignment: moving
  work off lost nodes is a separate decision (grace period), not this pass's.
- Bounds (berth.limits, from the controller's flags): a node never gets a new
  container once it holds ``max_containers_per_node``; a service whose stored
  ``replicas`` exceeds ``max_replicas`` (written before the limit, or under a larger
  one) is invalid: nothing is created, updated or removed for it, and the pass says
  why in ``Plan.invalid`` instead of planning a billion names.
- A node whose own addresses, routes or implicit networks overlap one of a service's
  networks (NodeRecord.overlap; a node that joined after the network was applied)
  gets none of that service's containers; a container with no other node stays
  pending with the overlap as its reason. So does a node whose agent reports no
  subnet for an implicit network the container needs (``bip``: an old agent).
- Node-local networks (bridge): a node whose copy of the subnet has no address left
  gets no new container on it.
- Ports (hostports.py): a node where a fixed host port of the service is already
  published (same protocol, overlapping address) is refused, with the holder named;
  random host ports are picked on the chosen node and kept across re-plans. A kept
  container whose new ports cannot be had keeps its old spec and says why in
  ``Plan.stuck``.
- ``network_mode: container:<c>`` (and ``service:<s>``, replica i joining ``<s>-i``):
  the joiner goes to the node of its target, and only once the target's agent reports
  it running; until then it is pending with that reason. A joiner whose target now
  runs on another node is removed, to be placed there again; one whose target no
  service produces any more (deleted, scaled down) is removed and pending.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from berth.limits import DEFAULT_LIMITS, Limits
from berth.manifest import NetworkDocument, ServiceDocument
from berth.records import (
    ContainerSpec,
    ContainerStatus,
    NetworkAttachment,
    NodeRecord,
    PortMapping,
)
from controller.addrspace import AddressError, implicit_space, network_space
from controller.attachments import IMPLICIT_NETWORKS, intents, is_node_local
from controller.hostports import PortTable
from controller.netmode import joiner_target, produced, replica_index, resolved_mode

__all__ = ["Assignment", "Create", "DesiredService", "Plan", "Remove", "Update",
           "attachment_intents", "choose_node", "container_names", "desired_spec", "plan",
           "replica_index"]

SHOWN_NODES = 3     # a pending reason names at most this many nodes


@dataclass(frozen=True)
class Assignment:
    """One key under /berth/assign/: a container placed on a node."""

    node: str
    spec: ContainerSpec
    mod_revision: int


@dataclass(frozen=True)
class Create:
    spec: ContainerSpec
    service_revision: int     # the desired key's mod revision the decision was made from


@dataclass(frozen=True)
class Update:
    spec: ContainerSpec
    mod_revision: int         # of the assignment being replaced
    service_revision: int


@dataclass(frozen=True)
class Remove:
    node: str
    container: str
    mod_revision: int


@dataclass(frozen=True)
class DesiredService:
    doc: ServiceDocument
    mod_revision: int


@dataclass
class Plan:
    creates: list[Create] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    removes: list[Remove] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)   # container -> reason
    invalid: dict[str, str] = field(default_factory=dict)   # service -> reason
    stuck: dict[str, str] = field(default_factory=dict)     # container -> why no update
    awaited: set[str] = field(default_factory=set)   # network_mode targets joiners wait on

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.removes)


def container_names(service: str, replicas: int) -> list[str]:
    return [f"{service}-{index}" for index in range(1, replicas + 1)]


def attachment_intents(
    service: ServiceDocument, networks: Mapping[str, NetworkDocument]
) -> tuple[NetworkAttachment, ...]:
    """The attachments a service asks for, before IPAM fills addresses (attachments.py)."""
    return intents(service, networks)


def attachment_satisfies(current: NetworkAttachment, intent: NetworkAttachment) -> bool:
    """Whether an existing (possibly IPAM-filled) attachment still meets the intent."""
    return (current.network == intent.network and current.driver == intent.driver
            and current.aliases == intent.aliases and (not intent.ip or current.ip == intent.ip)
            and current.internal == intent.internal and current.options == intent.options
            and current.mtu == intent.mtu and current.default_route == intent.default_route)


def desired_spec(
    service: ServiceDocument, container: str, node: str,
    networks: Mapping[str, NetworkDocument], previous: ContainerSpec | None = None,
    ports: Iterable[PortMapping] = (),
) -> ContainerSpec:
    """The ContainerSpec for one replica; keeps ``previous`` attachments that still fit.

    ``ports`` are the PortMappings the port table decided for this container.
    """
    spec = service.spec
    old = {att.network: att for att in previous.networks} if previous else {}
    attachments = tuple(
        old[i.network] if i.network in old and attachment_satisfies(old[i.network], i) else i
        for i in intents(service, networks))
    return ContainerSpec(
        name=container, service=service.name, node=node, image=spec.image,
        command=tuple(spec.command) if spec.command is not None else None,
        entrypoint=tuple(spec.entrypoint) if spec.entrypoint is not None else None,
        env=spec.environment(), workdir=spec.workdir, networks=attachments,
        ports=tuple(ports), network_mode=resolved_mode(service, container),
        generation=previous.generation if previous else 1)


def plan(
    services: Mapping[str, DesiredService],
    networks: Mapping[str, NetworkDocument],
    nodes: Mapping[str, NodeRecord],
    assignments: Iterable[Assignment],
    limits: Limits = DEFAULT_LIMITS,
    statuses: Mapping[str, ContainerStatus] | None = None,
) -> Plan:
    """Derive this pass's actions; ``nodes`` holds only Ready nodes.

    ``statuses`` (what the agents report) tell whether a ``network_mode`` target runs.
    """
    result = Plan()
    for name, svc in services.items():
        replicas = svc.doc.spec.replicas
        if replicas > limits.max_replicas:
            shown = replicas if replicas.bit_length() <= 64 else "of more than 20 digits"
            result.invalid[name] = (f"replicas {shown} is more than the "
                                    f"maximum of {limits.max_replicas} (--max-replicas); "
                                    "its containers are left as they are")
    kept = _keep(services, assignments, result)
    load: Counter[str] = Counter({name: 0 for name in nodes})
    room = _Room(nodes, load, limits.max_containers_per_node, networks)
    for current in kept.values():
        room.take(current.node, current.spec)
    context = _Context(services, networks, room, kept, statuses or {}, result)
    for service_name in sorted(services):
        if service_name not in result.invalid:
            _plan_service(services[service_name], context)
    return result


def _keep(services: Mapping[str, DesiredService], assignments: Iterable[Assignment],
          result: Plan) -> dict[str, Assignment]:
    """The assignments that stay; the others become removes."""
    kept: dict[str, Assignment] = {}
    for current in sorted(assignments, key=lambda a: (a.spec.name, a.node)):
        name = current.spec.name
        service = services.get(current.spec.service)
        if service is not None and service.doc.name in result.invalid:
            kept[name] = current
            continue
        wanted = service is not None and 0 < replica_index(
            service.doc.name, name) <= service.doc.spec.replicas
        pinned = service.doc.spec.placement.node if service else None
        moved = pinned is not None and pinned != current.node
        if not wanted or moved or name in kept:
            result.removes.append(Remove(current.node, name, current.mod_revision))
            continue
        kept[name] = current
    # A joiner follows its target: one left on another node is placed again, and one
    # whose target no service produces any more waits (pending says why).
    docs = {n: s.doc for n, s in services.items()}
    for name, current in list(kept.items()):
        service = services.get(current.spec.service)
        if service is None or service.doc.name in result.invalid:
            continue
        target = joiner_target(service.doc, name)
        if target is None:
            continue
        moved = target in kept and kept[target].node != current.node
        if moved or not produced(docs, target):
            result.removes.append(Remove(current.node, name, current.mod_revision))
            del kept[name]
    return kept


class _Room:
    """Which Ready nodes can take one more container of a service, and why not."""

    def __init__(self, nodes: Mapping[str, NodeRecord], load: Counter[str], limit: int,
                 networks: Mapping[str, NetworkDocument]) -> None:
        self.nodes = nodes
        self.load = load
        self.limit = limit
        self.networks = networks
        self.ports = PortTable()
        self.addresses: Counter[tuple[str, str]] = Counter()   # (network, node) -> in use

    def take(self, node: str, spec: ContainerSpec) -> None:
        self.load[node] += 1
        self.ports.add(node, spec.name, spec.ports)
        for att in spec.networks:
            if is_node_local(att):
                self.addresses[(att.network, node)] += 1

    def refusals(self, atts: tuple[NetworkAttachment, ...]) -> dict[str, str]:
        """node -> why it can never run these attachments (overlap, no implicit subnet)."""
        out: dict[str, str] = {}
        for att in atts:
            for node_name, record in sorted(self.nodes.items()):
                if node_name in out:
                    continue
                if att.network in IMPLICIT_NETWORKS:
                    if record.implicit_network(att.network) is None:
                        out[node_name] = (f"node {node_name} reports no subnet for network "
                                          f"{att.network} (its agent predates it)")
                    continue
                net = self.networks.get(att.network)
                if net is None:
                    continue
                subnet = net.spec.network()
                clash = record.overlap(subnet, underlay=net.spec.driver != "macvlan")
                if clash is not None:
                    out[node_name] = f"network {att.network} ({subnet}) overlaps {clash}"
        return out

    def address_full(self, node: str, atts: tuple[NetworkAttachment, ...]) -> str | None:
        """Why ``node`` has no address left on one of the node-local ``atts``, or None."""
        for att in atts:
            if not is_node_local(att):
                continue
            try:
                net = self.networks.get(att.network)
                space = (network_space(net, self.nodes, node) if net is not None
                         else implicit_space(att, node, self.nodes))
            except AddressError:
                continue        # reported by refusals()
            if self.addresses[(att.network, node)] >= space.capacity():
                return f"network {att.network}: no free address left in {space.pool} on " \
                       f"node {node}"
        return None

    def full(self, node: str) -> bool:
        return self.load.get(node, 0) >= self.limit

    def full_reason(self, node: str) -> str:
        return (f'node "{node}" already has {self.load.get(node, 0)} containers, the maximum '
                "(--max-containers-per-node)")


@dataclass
class _Context:
    services: Mapping[str, DesiredService]
    networks: Mapping[str, NetworkDocument]
    room: _Room
    kept: Mapping[str, Assignment]
    statuses: Mapping[str, ContainerStatus]
    result: Plan


def _plan_service(service: DesiredService, ctx: _Context) -> None:
    doc, room = service.doc, ctx.room
    atts = intents(doc, ctx.networks)
    wanted = doc.spec.published()
    refusals: dict[str, str] | None = None      # computed once, only if something is placed
    for name in container_names(doc.name, doc.spec.replicas):
        current = ctx.kept.get(name)
        if current is not None:
            _respec(service, current, ctx)
            continue
        target = joiner_target(doc, name)
        if target is not None:
            node, reason = _joiner_node(doc, target, ctx)
            if node is None:
                ctx.result.awaited.add(target)
        else:
            if refusals is None:
                refusals = room.refusals(atts)
            reasons = dict(refusals)
            for node_name in room.nodes:
                why = reasons.get(node_name) or room.ports.fixed_conflict(
                    node_name, wanted, name) or room.address_full(node_name, atts)
                if why is not None:
                    reasons[node_name] = why
            node, reason = choose_node(doc.spec.placement.node, room, reasons)
        if node is None:
            ctx.result.pending[name] = reason
            continue
        ports = room.ports.mappings(node, wanted, name)
        if isinstance(ports, str):
            ctx.result.pending[name] = ports
            continue
        spec = desired_spec(doc, name, node, ctx.networks, ports=ports)
        room.take(node, spec)
        ctx.result.creates.append(Create(spec, service.mod_revision))


def _respec(service: DesiredService, current: Assignment, ctx: _Context) -> None:
    """Plan an update of a kept container whose spec changed."""
    name, node = current.spec.name, current.node
    ports = ctx.room.ports.mappings(node, service.doc.spec.published(), name,
                                    previous=current.spec.ports)
    if isinstance(ports, str):
        ctx.result.stuck[name] = ports
        return
    spec = desired_spec(service.doc, name, node, ctx.networks, current.spec, ports)
    if spec == current.spec:
        return
    ctx.room.ports.drop(node, name)
    ctx.room.ports.add(node, name, ports)
    bumped = spec.model_copy(update={"generation": current.spec.generation + 1})
    ctx.result.updates.append(Update(bumped, current.mod_revision, service.mod_revision))


def _joiner_node(doc: ServiceDocument, target: str, ctx: _Context) -> tuple[str | None, str]:
    """The node of a ``network_mode`` joiner: its target's, once the target runs."""
    what = f'its network_mode target "{target}"'
    placed = ctx.kept.get(target)
    if placed is None:
        if not produced({n: s.doc for n, s in ctx.services.items()}, target):
            return None, f"{what} does not exist (no service has that replica)"
        return None, f"waiting for {what} to be placed"
    status = ctx.statuses.get(target)
    state = status.state if status is not None and status.node == placed.node else "pending"
    if state != "running":
        return None, f"waiting for {what} to run (it is {state})"
    node = placed.node
    pinned = doc.spec.placement.node
    if node not in ctx.room.nodes:
        return None, f'{what} is on node "{node}", which is not Ready'
    if pinned is not None and pinned != node:
        return None, (f'placement.node "{pinned}" is not the node of {what} ("{node}"), '
                      "whose network namespace it joins")
    if ctx.room.full(node):
        return None, ctx.room.full_reason(node)
    return node, ""


def choose_node(
    pinned: str | None, room: _Room, refusals: Mapping[str, str]
) -> tuple[str | None, str]:
    """The node for a new container, or None and why it must wait."""
    if pinned is not None:
        if pinned not in room.nodes:
            return None, f'placement.node "{pinned}" is not a Ready node'
        if pinned in refusals:
            return None, refusals[pinned]
        if room.full(pinned):
            return None, room.full_reason(pinned)
        return pinned, ""
    if not room.nodes:
        return None, "no Ready node"
    fits = [n for n in room.nodes if n not in refusals and not room.full(n)]
    if fits:
        return min(fits, key=lambda n: (room.load.get(n, 0), n)), ""
    reasons = [refusals.get(n) or room.full_reason(n) for n in sorted(room.nodes)]
    more = len(reasons) - SHOWN_NODES
    shown = "; ".join(reasons[:SHOWN_NODES]) + (f"; and {more} more" if more > 0 else "")
    return None, f"no Ready node can take it: {shown}"
