"""Pure scheduling decisions: from desired services, Ready nodes and current assignments
to the actions that make them agree. No I/O here, so every rule is unit-testable.

Called by scheduler.py (each pass) and server.py (Get shows why a container is pending).

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
- A node whose own addresses or routes overlap one of a service's networks
  (NodeRecord.overlap; a node that joined after the network was applied) gets none
  of that service's containers; a container with no other node stays pending with
  the overlap as its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from berth.limits import DEFAULT_LIMITS, Limits
from berth.manifest import NetworkDocument, ServiceDocument, ServiceNetwork
from berth.records import ContainerSpec, NetworkAttachment, NodeRecord

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

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.removes)


def container_names(service: str, replicas: int) -> list[str]:
    return [f"{service}-{index}" for index in range(1, replicas + 1)]


def replica_index(service: str, container: str) -> int:
    """N for ``<service>-N`` (N >= 1 without leading zeros), else 0; no list is built."""
    prefix = f"{service}-"
    suffix = container.removeprefix(prefix)
    if suffix == container or not suffix.isdigit() or suffix[0] == "0" or len(suffix) > 18:
        return 0
    return int(suffix)


def attachment_intents(
    service: ServiceDocument, networks: Mapping[str, NetworkDocument]
) -> tuple[NetworkAttachment, ...]:
    """The attachments a service asks for, before IPAM fills addresses.

    A network missing from ``networks`` (deleted under a running service) is
    skipped; Apply refuses to create that situation.
    """
    out = []
    for name, opts in sorted(service.spec.attachments().items()):
        net = networks.get(name)
        if net is None:
            continue
        out.append(_intent(name, net, opts))
    return tuple(out)


def _intent(name: str, net: NetworkDocument, opts: ServiceNetwork) -> NetworkAttachment:
    return NetworkAttachment(network=name, driver=net.spec.driver, ip=opts.ip or "",
                             aliases=tuple(opts.aliases))


def attachment_satisfies(current: NetworkAttachment, intent: NetworkAttachment) -> bool:
    """Whether an existing (possibly IPAM-filled) attachment still meets the intent."""
    return (current.network == intent.network and current.driver == intent.driver
            and current.aliases == intent.aliases and (not intent.ip or current.ip == intent.ip))


def desired_spec(
    service: ServiceDocument, container: str, node: str,
    networks: Mapping[str, NetworkDocument], previous: ContainerSpec | None = None,
) -> ContainerSpec:
    """The ContainerSpec for one replica; keeps ``previous`` attachments that still fit."""
    spec = service.spec
    intents = attachment_intents(service, networks)
    old = {att.network: att for att in previous.networks} if previous else {}
    attachments = tuple(
        old[i.network] if i.network in old and attachment_satisfies(old[i.network], i) else i
        for i in intents)
    return ContainerSpec(
        name=container, service=service.name, node=node, image=spec.image,
        command=tuple(spec.command) if spec.command is not None else None,
        entrypoint=tuple(spec.entrypoint) if spec.entrypoint is not None else None,
        env=spec.environment(), workdir=spec.workdir, networks=attachments,
        generation=previous.generation if previous else 1)


def plan(
    services: Mapping[str, DesiredService],
    networks: Mapping[str, NetworkDocument],
    nodes: Mapping[str, NodeRecord],
    assignments: Iterable[Assignment],
    limits: Limits = DEFAULT_LIMITS,
) -> Plan:
    """Derive this pass's actions; ``nodes`` holds only Ready nodes."""
    result = Plan()
    for name, svc in services.items():
        replicas = svc.doc.spec.replicas
        if replicas > limits.max_replicas:
            shown = replicas if replicas.bit_length() <= 64 else "of more than 20 digits"
            result.invalid[name] = (f"replicas {shown} is more than the "
                                    f"maximum of {limits.max_replicas} (--max-replicas); "
                                    "its containers are left as they are")
    load: Counter[str] = Counter({name: 0 for name in nodes})
    kept: dict[str, Assignment] = {}
    for current in sorted(assignments, key=lambda a: (a.spec.name, a.node)):
        name = current.spec.name
        service = services.get(current.spec.service)
        if service is not None and service.doc.name in result.invalid:
            kept[name] = current
            load[current.node] += 1
            continue
        wanted = service is not None and 0 < replica_index(
            service.doc.name, name) <= service.doc.spec.replicas
        pinned = service.doc.spec.placement.node if service else None
        moved = pinned is not None and pinned != current.node
        if not wanted or moved or name in kept:
            result.removes.append(Remove(current.node, name, current.mod_revision))
            continue
        kept[name] = current
        load[current.node] += 1
    room = _Room(nodes, load, limits.max_containers_per_node)
    for service_name in sorted(services):
        if service_name not in result.invalid:
            _plan_service(services[service_name], networks, room, kept, result)
    return result


class _Room:
    """Which Ready nodes can take one more container of a service, and why not."""

    def __init__(self, nodes: Mapping[str, NodeRecord], load: Counter[str], limit: int) -> None:
        self.nodes = nodes
        self.load = load
        self.limit = limit

    def refusals(self, service: ServiceDocument,
                 networks: Mapping[str, NetworkDocument]) -> dict[str, str]:
        """node -> why it cannot run this service's containers (network overlap)."""
        out: dict[str, str] = {}
        for net_name in sorted(service.spec.attachments()):
            net = networks.get(net_name)
            if net is None:
                continue
            subnet = net.spec.network()
            for node_name, record in self.nodes.items():
                clash = record.overlap(subnet) if node_name not in out else None
                if clash is not None:
                    out[node_name] = f"network {net_name} ({subnet}) overlaps {clash}"
        return out

    def full(self, node: str) -> bool:
        return self.load.get(node, 0) >= self.limit

    def full_reason(self, node: str) -> str:
        return (f'node "{node}" already has {self.load.get(node, 0)} containers, the maximum '
                "(--max-containers-per-node)")


def _plan_service(
    service: DesiredService, networks: Mapping[str, NetworkDocument], room: _Room,
    kept: Mapping[str, Assignment], result: Plan,
) -> None:
    doc = service.doc
    refusals: dict[str, str] | None = None      # computed once, only if something is placed
    for name in container_names(doc.name, doc.spec.replicas):
        current = kept.get(name)
        if current is not None:
            spec = desired_spec(doc, name, current.node, networks, current.spec)
            if spec != current.spec:
                bumped = spec.model_copy(update={"generation": current.spec.generation + 1})
                result.updates.append(Update(bumped, current.mod_revision, service.mod_revision))
            continue
        if refusals is None:
            refusals = room.refusals(doc, networks)
        node, reason = choose_node(doc.spec.placement.node, room, refusals)
        if node is None:
            result.pending[name] = reason
            continue
        room.load[node] += 1
        result.creates.append(Create(desired_spec(doc, name, node, networks),
                                     service.mod_revision))


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
