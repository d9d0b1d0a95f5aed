"""IP address management: which container holds which address on which network.

Called by scheduler.py (every pass) and getters.py (why a replica is pending). The
decisions here are pure functions of one snapshot; scheduler.py writes them.

An allocation is a key whose value is the container name:

    /berth/ipam/<network>/<ip>           overlay and macvlan: one address space per cluster
    /berth/ipam/<network>/<node>/<ip>    bridge networks and the implicit ``bridge`` and
                                         ``berth-gwbridge``: one per node, so every node
                                         reuses the subnet (Docker's local scope)

It is created with a create-if-absent guard (version == 0) in the SAME transaction as
the assignment that uses it, so an address is never handed out twice and an assignment
write that loses a race leaks nothing. Released keys are deleted guarded by their mod
revision, in the transaction that removes the assignment. A re-resolve that moves an
attachment (a node's ``bip`` changed) releases the old key in the transaction that
claims the new one.

Where addresses come from: addrspace.py (a network's ``ip_range`` or subnet, minus what
is never handed out; the implicit networks' subnets from the node's record).

Address choice for one attachment (``pick_address``):
1. a static ip the service asks for: it must be free or already this container's;
2. the address the attachment already has, if it is still this container's or free
   (so a re-resolve never moves a running container);
3. an address this container already holds on that network (a leftover of a crash);
4. the first free address of the pool.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from berth import keyspace
from berth.etcd import Listing, txn
from berth.manifest import NetworkDocument, ServiceDocument
from berth.netaddr import mac_from_ip
from berth.records import ContainerSpec, NetworkAttachment, NodeRecord
from controller.addrspace import AddressError, AddressSpace, implicit_space, network_space
from controller.attachments import IMPLICIT_NETWORKS, is_node_local

__all__ = ["AddressBook", "AddressError", "AddressSpace", "Allocation", "Resolution",
           "implicit_space", "network_space", "orphans", "parse_allocations", "pick_address",
           "resolve", "static_ips"]


@dataclass(frozen=True)
class Allocation:
    """One /berth/ipam key. ``mod_revision`` is 0 for one this pass is about to create."""

    network: str
    ip: str
    container: str
    mod_revision: int = 0
    node: str = ""          # set for node-local networks

    @property
    def key(self) -> str:
        if self.node:
            return keyspace.ipam_node(self.network, self.node, self.ip)
        return keyspace.ipam(self.network, self.ip)

    @property
    def slot(self) -> tuple[str, str, str]:
        return self.network, self.node, self.ip


def parse_allocations(listing: Listing) -> list[Allocation]:
    out = []
    for value, meta in listing.items:
        network, _, rest = meta.key.removeprefix(keyspace.IPAM).partition("/")
        node, _, ip = rest.rpartition("/")
        out.append(Allocation(network, ip, value.decode(errors="replace"), meta.mod_revision,
                              node))
    return out


def pick_address(
    network: str, subnet: ipaddress.IPv4Network, gateway: str, taken: Mapping[str, str],
    container: str, *, static: str | None = None, current: str = "",
    space: AddressSpace | None = None,
) -> str:
    """The address ``container`` gets on ``network`` (see the module docstring for the order).

    ``taken`` maps every allocated ip of the network (on the node, if node-local) to its
    holder, this container's too. ``space`` adds a pool and exclusions to subnet/gateway.
    """
    space = space or AddressSpace(subnet, gateway, subnet)
    where = f" on node {space.node}" if space.node else ""

    def mine(ip: str) -> bool:
        return taken.get(ip) == container

    if static:
        if not space.usable(static):
            raise AddressError(f"network {network}: ip {static} is not a free host address "
                               f"of {space.subnet}")
        if static in taken and not mine(static):
            raise AddressError(f"network {network}: ip {static} is already used by "
                               f"{taken[static]}{where}")
        return static
    if current and space.usable(current) and ipaddress.IPv4Address(current) in space.pool \
            and (mine(current) or current not in taken):
        return current
    held = sorted(ipaddress.IPv4Address(ip) for ip in taken
                  if mine(ip) and space.usable(ip) and ipaddress.IPv4Address(ip) in space.pool)
    if held:
        return str(held[0])
    for candidate in space.candidates():
        if str(candidate) not in taken:
            return str(candidate)
    raise AddressError(f"network {network}: no free address left in {space.pool}{where}")


@dataclass
class AddressBook:
    """Every allocation of the snapshot, kept up to date with this pass's own writes."""

    entries: dict[tuple[str, str, str], Allocation] = field(default_factory=dict)

    @classmethod
    def of(cls, allocations: Iterable[Allocation]) -> AddressBook:
        return cls({a.slot: a for a in allocations})

    def taken(self, network: str, node: str = "") -> dict[str, str]:
        """ip -> holder on ``network`` (on ``node``'s copy of a node-local network)."""
        return {ip: a.container for (net, where, ip), a in self.entries.items()
                if net == network and where == node}

    def held_by(self, container: str) -> list[Allocation]:
        return sorted((a for a in self.entries.values() if a.container == container),
                      key=lambda a: (a.network, a.node, ipaddress.IPv4Address(a.ip)))

    def record(self, resolution: Resolution, revision: int) -> None:
        """Apply a resolution whose transaction committed at ``revision``."""
        for gone in resolution.releases:
            self.entries.pop(gone.slot, None)
        for new in (*resolution.claims, *resolution.kept):
            self.entries[new.slot] = Allocation(new.network, new.ip, new.container, revision,
                                                new.node)

    def release(self, allocations: Iterable[Allocation]) -> None:
        for gone in allocations:
            self.entries.pop(gone.slot, None)

    def refresh(self, network: str, listing: Listing) -> None:
        """Replace ``network``'s entries (every node's) with a fresh listing of its prefix."""
        for key in [k for k in self.entries if k[0] == network]:
            del self.entries[key]
        for alloc in parse_allocations(listing):
            self.entries[alloc.slot] = alloc


def static_ips(service: ServiceDocument | None) -> dict[str, str | None]:
    """network -> the static ip ``service`` asks for there (None: any address)."""
    if service is None:
        return {}
    return {name: opts.ip for name, opts in service.spec.attachments().items()}


@dataclass(frozen=True)
class Resolution:
    """A spec with every attachment filled, and the ipam writes that go with it."""

    spec: ContainerSpec
    claims: tuple[Allocation, ...] = ()     # to create (version == 0)
    kept: tuple[Allocation, ...] = ()       # already ours; guarded so they stay ours
    releases: tuple[Allocation, ...] = ()   # ours but no longer used: delete

    @property
    def networks(self) -> list[str]:
        return sorted({a.network for a in (*self.claims, *self.kept, *self.releases)})

    def compares(self) -> list[txn.Compare]:
        return ([txn.version(a.key) == 0 for a in self.claims]
                + [txn.mod(a.key) == a.mod_revision for a in (*self.kept, *self.releases)])

    def ops(self) -> list[txn.Op]:
        # Kept keys are re-put so their mod revision moves: a collector that saw one as an
        # orphan (no assignment yet) then fails its guarded delete instead of freeing it.
        puts: list[txn.Op] = [txn.put(a.key, a.container) for a in (*self.claims, *self.kept)]
        return puts + [txn.delete(a.key) for a in self.releases]


def _space(att: NetworkAttachment, spec: ContainerSpec, networks: Mapping[str, NetworkDocument],
           vnis: Mapping[str, int], nodes: Mapping[str, NodeRecord]) -> tuple[AddressSpace, int]:
    """The attachment's address space and VNI."""
    if att.network in IMPLICIT_NETWORKS:
        return implicit_space(att, spec.node, nodes), 0
    net = networks.get(att.network)
    if net is None:
        raise AddressError(f'network "{att.network}" does not exist')
    vni = vnis.get(att.network, 0) if net.spec.driver == "overlay" else 0
    if net.spec.driver == "overlay" and not vni:
        raise AddressError(f"network {att.network}: no VNI allocated yet")
    return network_space(net, nodes, spec.node), vni


def resolve(
    spec: ContainerSpec, networks: Mapping[str, NetworkDocument], vnis: Mapping[str, int],
    book: AddressBook, statics: Mapping[str, str | None] | None = None,
    nodes: Mapping[str, NodeRecord] | None = None,
) -> Resolution:
    """Fill ip, prefixlen, gateway, mac and vni of every attachment of ``spec``.

    ``statics`` maps network -> the static ip the service asks for; ``nodes`` are the
    Ready nodes (the implicit networks' subnets, macvlan's LAN hosts). Raises
    AddressError when an attachment cannot be given an address.
    """
    statics = statics or {}
    nodes = nodes or {}
    filled: list[NetworkAttachment] = []
    claims: list[Allocation] = []
    used: set[tuple[str, str, str]] = set()
    for att in spec.networks:
        space, vni = _space(att, spec, networks, vnis, nodes)
        node = spec.node if is_node_local(att) else ""
        taken = book.taken(att.network, node)
        ip = pick_address(att.network, space.subnet, space.gateway, taken, spec.name,
                          static=statics.get(att.network), current=att.ip, space=space)
        used.add((att.network, node, ip))
        if taken.get(ip) != spec.name:
            claims.append(Allocation(att.network, ip, spec.name, node=node))
        filled.append(att.model_copy(update={
            "ip": ip, "prefixlen": space.subnet.prefixlen, "gateway": space.gateway,
            "mac": mac_from_ip(ip), "vni": vni}))
    held = book.held_by(spec.name)
    return Resolution(
        spec=spec.model_copy(update={"networks": tuple(filled)}),
        claims=tuple(claims),
        kept=tuple(a for a in held if a.slot in used),
        releases=tuple(a for a in held if a.slot not in used))


def orphans(book: AddressBook, live: set[str], networks: Iterable[str]) -> list[Allocation]:
    """Allocations nobody uses: the holder is not a live container, or the network is gone.

    ``live`` holds every container that has an assignment or that this pass plans to
    create, so an address is only collected once nothing can still want it. The implicit
    networks always exist.
    """
    known = set(networks) | set(IMPLICIT_NETWORKS)
    return [a for a in book.entries.values() if a.container not in live or a.network not in known]
