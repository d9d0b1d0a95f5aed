"""VXLAN network identifiers: one VNI per overlay network, allocated in etcd.

Called by store.py (Apply allocates, Delete releases, in the same transaction as the
desired write, so an overlay network never exists without its VNI) and by scheduler.py
(a level-triggered repair pass: allocate for networks that lack one, release what no
network owns). Read into ClusterState by state.py.

Two keys per allocation, always written and deleted together:

    /berth/netstate/<network> = "<vni>"     one VNI per network (create-if-absent)
    /berth/vni/<vni>          = <network>   one network per VNI (create-if-absent)

Both guards sit in one transaction, so two controllers allocating at once can neither
give two networks the same VNI nor one network two VNIs; the loser re-reads and retries.
Numbering starts at 4096 (first free), clear of small VNIs other VXLAN users pick by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from berth import keyspace
from berth.errors import PermanentError
from berth.etcd import KeyValue, Listing, txn
from berth.manifest import NetworkDocument

log = logging.getLogger(__name__)

FIRST_VNI = 4096
LAST_VNI = (1 << 24) - 1


class VniExhausted(PermanentError):
    """Every VNI from FIRST_VNI to LAST_VNI is in use."""


@dataclass(frozen=True)
class Owned:
    """One side of an allocation as read: the number or name, and the key's mod revision."""

    value: str
    mod_revision: int


@dataclass(frozen=True)
class VniTable:
    """The /berth/netstate/ and /berth/vni/ keys, parsed."""

    by_network: dict[str, Owned] = field(default_factory=dict)   # network -> vni
    by_vni: dict[int, Owned] = field(default_factory=dict)       # vni -> network

    @classmethod
    def parse(cls, netstate: Listing, index: Listing) -> VniTable:
        table = cls()
        for value, meta in netstate.items:
            table.by_network[keyspace.last_segment(meta.key)] = Owned(
                value.decode(errors="replace"), meta.mod_revision)
        for value, meta in index.items:
            number = keyspace.last_segment(meta.key)
            if number.isdigit():
                table.by_vni[int(number)] = Owned(value.decode(errors="replace"),
                                                  meta.mod_revision)
        return table

    def of(self, network: str) -> int:
        """The network's VNI, or 0 when none is recorded (or the record is unreadable)."""
        owned = self.by_network.get(network)
        return int(owned.value) if owned is not None and owned.value.isdigit() else 0

    def assignments(self) -> dict[str, int]:
        return {name: self.of(name) for name in self.by_network if self.of(name)}


def first_free(used: Collection[int]) -> int:
    """The lowest VNI from FIRST_VNI on that is not in ``used``."""
    for number in range(FIRST_VNI, LAST_VNI + 1):
        if number not in used:
            return number
    raise VniExhausted(f"no free VNI left in {FIRST_VNI}..{LAST_VNI}")


def allocation(
    networks: Iterable[str], used: Collection[int]
) -> tuple[list[txn.Compare], list[txn.Op], dict[str, int]]:
    """Guards and puts that give each of ``networks`` the next free VNI."""
    taken = set(used)
    compares: list[txn.Compare] = []
    ops: list[txn.Op] = []
    chosen: dict[str, int] = {}
    for name in networks:
        number = first_free(taken)
        taken.add(number)
        chosen[name] = number
        compares += [txn.version(keyspace.netstate(name)) == 0,
                     txn.version(keyspace.vni(number)) == 0]
        ops += [txn.put(keyspace.netstate(name), str(number)),
                txn.put(keyspace.vni(number), name)]
    return compares, ops, chosen


def release(network: str, table: VniTable) -> tuple[list[txn.Compare], list[txn.Op]]:
    """Guards and deletes that free ``network``'s VNI (nothing if it has none)."""
    owned = table.by_network.get(network)
    if owned is None:
        return [], []
    compares = [txn.mod(keyspace.netstate(network)) == owned.mod_revision]
    ops: list[txn.Op] = [txn.delete(keyspace.netstate(network))]
    number = table.of(network)
    index = table.by_vni.get(number)
    if index is not None and index.value == network:
        compares.append(txn.mod(keyspace.vni(number)) == index.mod_revision)
        ops.append(txn.delete(keyspace.vni(number)))
    return compares, ops


def _allocation_for(
    name: str, table: VniTable
) -> tuple[list[txn.Compare], list[txn.Op], dict[str, int]]:
    """Allocate for one network, adopting an index key that already names it."""
    adopt = min((n for n, o in table.by_vni.items() if o.value == name), default=0)
    if adopt:
        compares = [txn.version(keyspace.netstate(name)) == 0,
                    txn.mod(keyspace.vni(adopt)) == table.by_vni[adopt].mod_revision]
        ops: list[txn.Op] = [txn.put(keyspace.netstate(name), str(adopt))]
        chosen = {name: adopt}
    else:
        compares, ops, chosen = allocation([name], table.by_vni)
    old = table.by_network.get(name)
    if old is not None:
        # An unreadable record under netstate/ is replaced, guarded by its revision.
        compares[0] = txn.mod(keyspace.netstate(name)) == old.mod_revision
    return compares, ops, chosen


def needs_vni(net: NetworkDocument) -> bool:
    return net.spec.driver == "overlay"


async def reconcile(
    etcd: KeyValue, networks: Mapping[str, NetworkDocument],
    network_revisions: Mapping[str, int], table: VniTable,
) -> bool:
    """Allocate missing VNIs and release orphaned ones; True if anything was written.

    Each change is its own guarded transaction; a lost guard is left to the next pass.
    """
    wrote = False
    for name in sorted(networks):
        if needs_vni(networks[name]) and not table.of(name):
            compares, ops, chosen = _allocation_for(name, table)
            compares.append(txn.mod(keyspace.desired("Network", name)) == network_revisions[name])
            ok, _ = await etcd.transaction(compares, ops)
            wrote |= ok
            if ok:
                log.info("network %s: allocated VNI %d", name, chosen[name])
    for name in sorted(set(table.by_network) - set(networks)):
        compares, ops = release(name, table)
        ok, _ = await etcd.transaction(
            [*compares, txn.version(keyspace.desired("Network", name)) == 0], ops)
        wrote |= ok
        if ok:
            log.info("network %s is gone: released its VNI", name)
    for number, owner in sorted(table.by_vni.items()):
        if table.of(owner.value) == number:
            continue
        # An index key no netstate record points back to: left by a crash or by hand.
        state = table.by_network.get(owner.value)
        guard = (txn.version(keyspace.netstate(owner.value)) == 0 if state is None
                 else txn.mod(keyspace.netstate(owner.value)) == state.mod_revision)
        ok, _ = await etcd.transaction(
            [guard, txn.mod(keyspace.vni(number)) == owner.mod_revision],
            [txn.delete(keyspace.vni(number))])
        wrote |= ok
    return wrote
