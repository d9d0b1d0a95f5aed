"""Apply-time checks that need more than one document: the file against what is stored.

Called by store.py with one consistent read (the file's documents, every stored Network
and Service, the Ready nodes). Pure: each check raises ManifestError with one line
``FILE: Kind/name: PATH: problem`` and the Apply writes nothing.

- A service's networks exist, do not overlap each other, and a static ip is a host
  address of the subnet that no ``aux_addresses`` entry reserves.
- A new network overlaps no Ready node's addresses, routes or implicit networks (a
  macvlan network only the implicit ones: it shares its parent's LAN), and a new bridge
  network no other bridge network (they share every node's routing table).
- A network's driver, subnet and gateway never change; its ``internal``, ``options``,
  ``mtu``, ``ip_range`` and ``aux_addresses`` do not change while a service uses it (the
  containers were wired with them).
- ``network_mode: container:<c>`` names a container some service produces, and
  ``service:<s>`` a service; neither may be the service itself or one that shares
  another's namespace itself (no chains).
- A network has room for the replicas that use it: its pool (``ip_range`` or subnet,
  minus reserved addresses) for overlay and macvlan; for bridge, whose pool is per node,
  the pool times the Ready nodes (at least one), and the pool for the replicas pinned
  to one node. Only a file that raises the demand is refused, so scaling down passes.
- Published ports land on a bridge-driver default route (attachments.ports_problem).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from berth.errors import ManifestError
from berth.manifest import Document, NetworkDocument, ServiceDocument
from berth.records import NodeRecord
from controller.addrspace import network_space
from controller.attachments import ports_problem
from controller.netmode import producer

# Fields of a network that its attached containers were wired with.
IN_USE_FIELDS = ("internal", "options", "mtu", "ip_range", "aux_addresses")
FIXED_FIELDS = ("driver", "subnet", "gateway")


@dataclass(frozen=True)
class Desired:
    """What is stored, and what the Apply would leave (stored overridden by the file)."""

    stored_networks: Mapping[str, NetworkDocument]
    stored_services: Mapping[str, ServiceDocument]
    networks: Mapping[str, NetworkDocument]
    services: Mapping[str, ServiceDocument]
    nodes: Sequence[NodeRecord]

    @classmethod
    def of(cls, docs: Sequence[Document], stored_networks: Mapping[str, NetworkDocument],
           stored_services: Mapping[str, ServiceDocument], nodes: Sequence[NodeRecord],
           ) -> Desired:
        networks = dict(stored_networks)
        services = dict(stored_services)
        for doc in docs:
            if isinstance(doc, NetworkDocument):
                networks[doc.name] = doc
            else:
                services[doc.name] = doc
        return cls(stored_networks, stored_services, networks, services,
                   sorted(nodes, key=lambda n: n.name))


def check_all(source: str, docs: Sequence[Document], desired: Desired) -> None:
    """Every check of this module, in file order; raises ManifestError on the first."""
    for doc in docs:
        if isinstance(doc, NetworkDocument):
            _check_network(source, doc, desired)
    for doc in docs:
        if isinstance(doc, ServiceDocument):
            _check_references(source, doc, desired.networks)
            _check_network_mode(source, doc, desired)
            problem = ports_problem(doc, desired.networks)
            if problem is not None:
                raise ManifestError(f"{source}: Service/{doc.name}: spec.ports: {problem}")
    _check_capacity(source, docs, desired)


def _check_network(source: str, doc: NetworkDocument, desired: Desired) -> None:
    where = f"{source}: Network/{doc.name}"
    old = desired.stored_networks.get(doc.name)
    if old is not None:
        _check_change(where, doc, old, desired)
        return
    subnet = doc.spec.network()
    for node in desired.nodes:
        clash = node.overlap(subnet, underlay=doc.spec.driver != "macvlan")
        if clash is not None:
            raise ManifestError(f"{where}: spec.subnet: {subnet} overlaps {clash}; pick a "
                                "range that no node uses")
    if doc.spec.driver != "bridge":
        return
    for name, other in sorted(desired.networks.items()):
        if name != doc.name and other.spec.driver == "bridge" and \
                other.spec.network().overlaps(subnet):
            raise ManifestError(
                f"{where}: spec.subnet: {subnet} overlaps bridge network {name} "
                f"({other.spec.subnet}); bridge networks share every node's routing table, "
                "so they may not overlap")


def _check_change(where: str, doc: NetworkDocument, old: NetworkDocument,
                  desired: Desired) -> None:
    # Addresses already handed out and the state on every host depend on these;
    # Docker treats networks as immutable for the same reason.
    for name in FIXED_FIELDS:
        before, after = getattr(old.spec, name), getattr(doc.spec, name)
        if before != after:
            raise ManifestError(
                f"{where}: spec.{name}: cannot change a network's {name} "
                f"({before} -> {after}); delete the network and apply it again")
    users = sorted({s.name for s in (*desired.stored_services.values(),
                                     *desired.services.values())
                    if doc.name in s.spec.attachments()})
    if not users:
        return
    for name in IN_USE_FIELDS:
        before, after = getattr(old.spec, name), getattr(doc.spec, name)
        if before != after:
            raise ManifestError(
                f"{where}: spec.{name}: cannot change the {name} of a network in use "
                f"({_shown(before)} -> {_shown(after)}); service {users[0]} uses it: "
                "remove it from the services that use it first")


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + "}"
    return "unset" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _check_references(source: str, doc: ServiceDocument,
                      networks: Mapping[str, NetworkDocument]) -> None:
    where = f"{source}: Service/{doc.name}: spec.networks"
    seen: dict[str, ipaddress.IPv4Network] = {}
    for name, opts in doc.spec.attachments().items():
        net = networks.get(name)
        if net is None:
            raise ManifestError(f'{where}.{name}: network "{name}" does not exist '
                                "(define it in this file or apply it first)")
        # One container cannot route to two networks with the same addresses.
        for other, subnet in seen.items():
            if subnet.overlaps(net.spec.network()):
                raise ManifestError(f"{where}.{name}: subnet {net.spec.network()} overlaps "
                                    f"network {other} ({subnet}); a container cannot join both")
        seen[name] = net.spec.network()
        if opts.ip is None:
            continue
        if doc.spec.replicas > 1:
            raise ManifestError(f"{where}.{name}.ip: a static ip needs replicas: 1 "
                                f"(got {doc.spec.replicas})")
        aux = {ip: key for key, ip in net.spec.aux_addresses.items()}
        if opts.ip in aux:
            raise ManifestError(f"{where}.{name}.ip: {opts.ip} is reserved by network "
                                f"{name}'s aux_addresses ({aux[opts.ip]})")
        if not network_space(net, {}).usable(opts.ip):
            raise ManifestError(f"{where}.{name}.ip: {opts.ip} is not a free host address "
                                f"of {net.spec.network()} (network {name})")


def _check_network_mode(source: str, doc: ServiceDocument, desired: Desired) -> None:
    where = f"{source}: Service/{doc.name}: spec.network_mode"
    shared = doc.spec.shares_netns_with()
    if shared is None:
        return
    kind, name = shared
    if kind == "service":
        target = desired.services.get(name)
        if target is None:
            raise ManifestError(f'{where}: service "{name}" does not exist (define it in '
                                "this file or apply it first)")
    else:
        target = producer(desired.services, name)
        if target is None:
            raise ManifestError(f'{where}: container "{name}" does not exist: no service '
                                "has that replica")
    if target.name == doc.name:
        raise ManifestError(f"{where}: a service cannot join the network namespace of its "
                            "own replicas")
    if target.spec.shares_netns_with() is not None:
        raise ManifestError(f"{where}: {target.name} itself joins the network namespace of "
                            f"{target.spec.network_mode}; join that one directly")
    for other in sorted(desired.services.values(), key=lambda s: s.name):
        shared_other = other.spec.shares_netns_with()
        if other.name == doc.name or shared_other is None:
            continue
        kind_other, name_other = shared_other
        joined = (desired.services.get(name_other) if kind_other == "service"
                  else producer(desired.services, name_other))
        if joined is not None and joined.name == doc.name:
            raise ManifestError(f"{where}: service {other.name} joins this service's "
                                "network namespace, so this one cannot join another's")


def _demand(services: Mapping[str, ServiceDocument], net: NetworkDocument, name: str
            ) -> dict[str, int]:
    """service -> addresses it takes from the network's pool."""
    pool = net.spec.pool()
    out: dict[str, int] = {}
    for svc in services.values():
        opts = svc.spec.attachments().get(name)
        if opts is None or svc.spec.network_mode is not None:
            continue
        if opts.ip is None:
            out[svc.name] = svc.spec.replicas
        elif ipaddress.IPv4Address(opts.ip) in pool:
            out[svc.name] = 1
    return out


def _check_capacity(source: str, docs: Sequence[Document], desired: Desired) -> None:
    in_file = [d for d in docs if isinstance(d, ServiceDocument)]
    nodes = {n.name: n for n in desired.nodes}
    for name in sorted({n for d in in_file for n in d.spec.attachments()}):
        net = desired.networks[name]
        capacity = network_space(net, nodes).capacity()
        after = _demand(desired.services, net, name)
        before = sum(_demand(desired.stored_services, net, name).values())
        total = sum(after.values())
        if total <= before:
            continue
        room, scope = capacity, ""
        if net.spec.node_local:
            room = capacity * max(1, len(nodes))
            scope = f" per node, on {len(nodes)} Ready node{'s' * (len(nodes) != 1)}"
            _check_pinned(source, in_file, desired, net, name, capacity)
        if total > room:
            first = next(d for d in in_file if name in d.spec.attachments())
            parts = ", ".join(f"{s} {n}" for s, n in sorted(after.items(), key=lambda i: -i[1])
                              [:3]) + (", ..." if len(after) > 3 else "")
            raise ManifestError(
                f"{source}: Service/{first.name}: spec.replicas: network {name} has room for "
                f"{capacity} containers in {net.spec.pool()}{scope}, but its services need "
                f"{total} ({parts}); use a larger subnet or ip_range, or fewer replicas")


def _check_pinned(source: str, in_file: Sequence[ServiceDocument], desired: Desired,
                  net: NetworkDocument, name: str, capacity: int) -> None:
    """Replicas pinned to one node share that node's copy of a node-local network."""
    per_node: dict[str, int] = {}
    demand = _demand(desired.services, net, name)
    for svc_name, count in demand.items():
        pinned = desired.services[svc_name].spec.placement.node
        if pinned is not None:
            per_node[pinned] = per_node.get(pinned, 0) + count
    for doc in in_file:
        pinned = doc.spec.placement.node
        if pinned is not None and name in doc.spec.attachments() and \
                per_node.get(pinned, 0) > capacity:
            raise ManifestError(
                f"{source}: Service/{doc.name}: spec.replicas: network {name} has room for "
                f"{capacity} containers in {net.spec.pool()} on each node, but "
                f"{per_node[pinned]} replicas are pinned to node {pinned}; use a larger "
                "subnet or ip_range, or fewer replicas")
