"""IP address management: which container holds which address on which network.

Called by scheduler.py (every pass) and getters.py (why a replica is pending). The
decisions here are pure functions of one snapshot; scheduler.py writes them.

An allocation is the key /berth/ipam/<network>/<ip> whose value is the container name.
It is created with a create-if-absent guard (version == 0) in the SAME transaction as
the assignment that uses it, so an address is never handed out twice and an assignment
write that loses a race leaks nothing. Released keys are deleted guarded by their mod
revision, in the transaction that removes the assignment.

Address choice for one attachment (``pick_address``):
1. a static ip the service asks for: it must be free or already this container's;
2. the address the attachment already has, if it is still this container's or free
   (so a re-resolve never moves a running container);
3. an address this container already holds on that network (a leftover of a crash);
4. the first free host address of the subnet. Network, broadcast and gateway are
   never handed out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from berth import keyspace
from berth.errors import PermanentError
from berth.etcd import Listing, txn
from berth.manifest import NetworkDocument, ServiceDocument
from berth.netaddr import assignable, is_assignable, mac_from_ip
from berth.records import ContainerSpec, NetworkAttachment


class AddressError(PermanentError):
    """No address can be given: subnet full, static ip taken, network or VNI missing.

    The scheduler records the message as the container's pending reason.
    """


@dataclass(frozen=True)
class Allocation:
    """One /berth/ipam key. ``mod_revision`` is 0 for one this pass is about to create."""

    network: str
    ip: str
    container: str
    mod_revision: int = 0

    @property
    def key(self) -> str:
        return keyspace.ipam(self.network, self.ip)


def parse_allocations(listing: Listing) -> list[Allocation]:
    out = []
    for value, meta in listing.items:
        network, _, ip = meta.key.removeprefix(keyspace.IPAM).partition("/")
        out.append(Allocation(network, ip, value.decode(errors="replace"), meta.mod_revision))
    return out


@dataclass
class AddressBook:
    """Every allocation of the snapshot, kept up to date with this pass's own writes."""

    entries: dict[tuple[str, str], Allocation] = field(default_factory=dict)

    @classmethod
    def of(cls, allocations: Iterable[Allocation]) -> AddressBook:
        return cls({(a.network, a.ip): a for a in allocations})

    def taken(self, network: str) -> dict[str, str]:
        """ip -> holder on ``network``."""
        return {ip: a.container for (net, ip), a in self.entries.items() if net == network}

    def held_by(self, container: str) -> list[Allocation]:
        return sorted((a for a in self.entries.values() if a.container == container),
                      key=lambda a: (a.network, ipaddress.IPv4Address(a.ip)))

    def record(self, resolution: Resolution, revision: int) -> None:
        """Apply a resolution whose transaction committed at ``revision``."""
        for gone in resolution.releases:
            self.entries.pop((gone.network, gone.ip), None)
        for new in (*resolution.claims, *resolution.kept):
            self.entries[(new.network, new.ip)] = Allocation(
                new.network, new.ip, new.container, revision)

    def release(self, allocations: Iterable[Allocation]) -> None:
        for gone in allocations:
            self.entries.pop((gone.network, gone.ip), None)

    def refresh(self, network: str, listing: Listing) -> None:
        """Replace ``network``'s entries with a fresh listing of its prefix."""
        for key in [k for k in self.entries if k[0] == network]:
            del self.entries[key]
        for alloc in parse_allocations(listing):
            self.entries[(alloc.network, alloc.ip)] = alloc


def pick_address(
    network: str, subnet: ipaddress.IPv4Network, gateway: str, taken: Mapping[str, str],
    container: str, *, static: str | None = None, current: str = "",
) -> str:
    """The address ``container`` gets on ``network`` (see the module docstring for the order).

    ``taken`` maps every allocated ip of the network to its holder, this container's too.
    """
    def mine(ip: str) -> bool:
        return taken.get(ip) == container

    if static:
        if not is_assignable(static, subnet, gateway):
            raise AddressError(f"network {network}: ip {static} is not a free host address "
                               f"of {subnet}")
        if static in taken and not mine(static):
            raise AddressError(f"network {network}: ip {static} is already used by "
                               f"{taken[static]}")
        return static
    if current and is_assignable(current, subnet, gateway) and (
            mine(current) or current not in taken):
        return current
    held = sorted(ipaddress.IPv4Address(ip) for ip in taken
                   if mine(ip) and is_assignable(ip, subnet, gateway))
    if held:
        return str(held[0])
    for candidate in assignable(subnet, gateway):
        if str(candidate) not in taken:
            return str(candidate)
    raise AddressError(f"network {network}: no free address left in {subnet}")


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


def resolve(
    spec: ContainerSpec, networks: Mapping[str, NetworkDocument], vnis: Mapping[str, int],
    book: AddressBook, statics: Mapping[str, str | None] | None = None,
) -> Resolution:
    """Fill ip, prefixlen, gateway, mac and vni of every attachment of ``spec``.

    ``statics`` maps network -> the static ip the service asks for. Raises AddressError
    when an attachment cannot be given an address.
    """
    statics = statics or {}
    filled: list[NetworkAttachment] = []
    claims: list[Allocation] = []
    used: set[tuple[str, str]] = set()
    for att in spec.networks:
        net = networks.get(att.network)
        if net is None:
            raise AddressError(f'network "{att.network}" does not exist')
        vni = vnis.get(att.network, 0) if net.spec.driver == "overlay" else 0
        if net.spec.driver == "overlay" and not vni:
            raise AddressError(f"network {att.network}: no VNI allocated yet")
        subnet, gateway = net.spec.network(), net.spec.gateway or ""
        taken = book.taken(att.network)
        ip = pick_address(att.network, subnet, gateway, taken, spec.name,
                          static=statics.get(att.network), current=att.ip)
        used.add((att.network, ip))
        if taken.get(ip) != spec.name:
            claims.append(Allocation(att.network, ip, spec.name))
        filled.append(att.model_copy(update={
            "ip": ip, "prefixlen": subnet.prefixlen, "gateway": gateway,
            "mac": mac_from_ip(ip), "vni": vni}))
    held = book.held_by(spec.name)
    return Resolution(
        spec=spec.model_copy(update={"networks": tuple(filled)}),
        claims=tuple(claims),
        kept=tuple(a for a in held if (a.network, a.ip) in used),
        releases=tuple(a for a in held if (a.network, a.ip) not in used))


def orphans(book: AddressBook, live: set[str], networks: Iterable[str]) -> list[Allocation]:
    """Allocations nobody uses: the holder is not a live container, or the network is gone.

    ``live`` holds every container that has an assignment or that this pass plans to
    create, so an address is only collected once nothing can still want it.
    """
    known = set(networks)
    return [a for a in book.entries.values() if a.container not in live or a.network not in known]
