"""Desired state in etcd: Apply and Delete as all-or-nothing transactions.

Called by server.py. Each request reads the keys it will touch, every stored network
and service and the Ready nodes (one transaction), decides, then writes everything in
ONE transaction whose compares pin every key to the mod revision just read, and the
network and service ranges to that read's revision (the checks in applychecks.py looked
at all of them: optimistic concurrency). A lost race is retried a few times from a
fresh read; after that the caller gets ConflictError.

Stored value: the validated document as canonical JSON (apiVersion, kind,
metadata, spec), so equal files compare equal and re-apply is "unchanged" (a stored
document that parses to the same model counts as equal too, so fields added later with
a default do not turn a re-apply into "configured").

Deleting a network is refused while a service uses it. The Delete transaction
guards the whole service range (no service key written after the read), not only
the services it saw: otherwise an Apply creating a new service on the network
could commit in between and leave that service attached to nothing.

Parsing runs on a worker thread (asyncio.to_thread): berth.yamlsafe bounds its work, and
the event loop keeps answering Get and the scheduler meanwhile. Limits (max replicas,
name lengths) come from the controller's flags (berth.limits).

Checks across documents (applychecks.py): a new network's subnet must not overlap any
Ready node's own addresses, non-default routes or implicit networks (a container would
take a host's address or hide a route), bridge networks must not overlap each other,
networks in use keep their settings, network_mode targets exist, subnets have room for
their replicas, and published ports can land. Nodes that join later with an overlapping
address are the scheduler's business (placement.py keeps the network's containers off
them).

Overlay networks get their VNI (vni.py) in the Apply transaction that creates
them (or that re-applies one found without a VNI) and lose it in the Delete
transaction that removes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from berth import keyspace, kinds
from berth.errors import ConflictError, ManifestError, NotFoundError, UserError
from berth.etcd import KeyValue, KVMeta, Listing, txn
from berth.etcd.model import prefix_range_end
from berth.limits import DEFAULT_LIMITS, Limits
from berth.manifest import (
    Document,
    NetworkDocument,
    ServiceDocument,
    load_manifest,
    parse_document,
)
from berth.records import NodeRecord
from controller import applychecks as checks
from controller import vni
from controller.errors import InUseError
from protos.etcd import rpc_pb2

log = logging.getLogger(__name__)

ATTEMPTS = 5
# All of one Apply goes into one etcd transaction, and etcd refuses requests over 1.5 MiB
# by default (--max-request-bytes). Keys, compares and VNI writes need the rest.
MAX_STORED_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str     # created | configured | unchanged | deleted | not found


@dataclass(frozen=True)
class _Current:
    value: bytes | None
    meta: KVMeta | None

    def guard(self, key: str) -> txn.Compare:
        """The compare that fails if anyone wrote ``key`` since we read it."""
        if self.meta is None:
            return txn.version(key) == 0
        return txn.mod(key) == self.meta.mod_revision


class _RangeUnchanged(txn.Compare):
    """``mod_revision < operand`` for EVERY key under ``key`` (an etcd range compare).

    Keys created after the read fail it too, which a compare per key read cannot see.
    """

    def __init__(self, prefix: str, revision: int) -> None:
        super().__init__(prefix, "mod_revision", "<", revision + 1)

    def to_pb(self) -> rpc_pb2.Compare:
        pb = super().to_pb()
        pb.range_end = prefix_range_end(pb.key)
        return pb


def canonical_kind(kind: str) -> str:
    """``service``/``services``/``Service`` -> ``Service``; UserError for anything else."""
    found = kinds.declared_kind(kind)
    if found is None:
        raise UserError(f'cannot delete kind "{kind}" (expected service or network)')
    return found


async def _read(etcd: KeyValue, keys: Sequence[str]) -> tuple[dict[str, _Current], int]:
    """Read ``keys`` in one transaction: a consistent view at one revision."""
    _, responses = await etcd.transaction([], [txn.get(k) for k in keys])
    out: dict[str, _Current] = {}
    revision = 0
    for key, listing in zip(keys, responses, strict=True):
        assert isinstance(listing, Listing)
        revision = max(revision, listing.revision)
        value, meta = listing.items[0] if listing.items else (None, None)
        out[key] = _Current(value, meta)
    return out, revision


def _retrying() -> AsyncRetrying:
    return AsyncRetrying(retry=retry_if_exception_type(ConflictError),
                         stop=stop_after_attempt(ATTEMPTS), wait=wait_random(0.02, 0.2),
                         reraise=True)


async def apply(
    etcd: KeyValue, source: str, text: str, *, dry_run: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[list[Applied], int]:
    """Validate ``text`` and write every document, or nothing. Returns results and revision."""
    docs = await asyncio.to_thread(load_manifest, source, text, limits)
    async for attempt in _retrying():
        with attempt:
            return await _apply_once(etcd, source, docs, dry_run)
    raise AssertionError("unreachable: tenacity reraises")


async def _apply_once(
    etcd: KeyValue, source: str, docs: list[Document], dry_run: bool
) -> tuple[list[Applied], int]:
    in_file = {d.name: d for d in docs if isinstance(d, NetworkDocument)}
    referenced = sorted({name for d in docs if isinstance(d, ServiceDocument)
                         for name in d.spec.attachments()} - set(in_file))
    keys = [keyspace.desired(d.kind, d.name) for d in docs]
    ref_keys = [keyspace.desired("Network", n) for n in referenced]
    overlays = [d.name for d in in_file.values() if vni.needs_vni(d)]
    state_keys = [keyspace.netstate(n) for n in overlays]
    snapshot = await _read_with_state(etcd, keys + ref_keys + state_keys)
    current, revision = snapshot.keys, snapshot.revision
    checks.check_all(source, docs, snapshot.desired(docs))
    results: list[Applied] = []
    puts: list[txn.Op] = []
    for doc, key in zip(docs, keys, strict=True):
        body = doc.to_json()
        old = current[key].value
        action = "created" if old is None else "unchanged" if _same(doc, old, body) \
            else "configured"
        results.append(Applied(doc.kind, doc.name, action))
        if action != "unchanged":
            puts.append(txn.put(key, body))
    _check_stored_size(source, docs, puts)
    if dry_run:
        return results, revision
    # A new overlay network gets its VNI in the same transaction: it never exists without one.
    lacking = [n for n, k in zip(overlays, state_keys, strict=True) if current[k].meta is None]
    vni_compares: list[txn.Compare] = []
    if lacking:
        used = vni.VniTable.parse(Listing((), 0), await etcd.get_prefix(keyspace.VNI)).by_vni
        vni_compares, vni_puts, _ = vni.allocation(lacking, used)
        puts += vni_puts
    if not puts:
        return results, revision
    # The checks read every network and service: none may be written meanwhile.
    compares = [current[k].guard(k) for k in keys + ref_keys] + vni_compares + [
        _RangeUnchanged(keyspace.desired_prefix(kind), revision)
        for kind in ("Network", "Service")]
    ok, responses = await etcd.transaction(compares, [*puts, txn.get(keys[0])])
    if not ok:
        raise ConflictError(f"{source}: another client changed the same objects; try again")
    last = responses[-1]
    return results, last.revision if isinstance(last, Listing) else revision


def _same(doc: Document, old: bytes, body: bytes) -> bool:
    """Whether the stored document means what ``doc`` means.

    Byte equality first; then the parsed form, so a document stored before a field with
    a default existed (its JSON lacks the key) re-applies as "unchanged".
    """
    if old == body:
        return True
    try:
        return parse_document(doc.kind, old) == doc
    except ManifestError:
        return False


@dataclass(frozen=True)
class _Snapshot:
    """One read for an Apply: the keys it writes or guards, and what the checks need."""

    keys: dict[str, _Current]
    revision: int
    networks: dict[str, NetworkDocument]
    services: dict[str, ServiceDocument]
    nodes: list[NodeRecord]

    def desired(self, docs: Sequence[Document]) -> checks.Desired:
        return checks.Desired.of(docs, self.networks, self.services, self.nodes)


async def _read_with_state(etcd: KeyValue, keys: Sequence[str]) -> _Snapshot:
    prefixes = (keyspace.desired_prefix("Network"), keyspace.desired_prefix("Service"),
                keyspace.NODES)
    _, responses = await etcd.transaction(
        [], [*(txn.get(k) for k in keys), *(txn.get_prefix(p) for p in prefixes)])
    listings = [r for r in responses if isinstance(r, Listing)]
    if len(listings) != len(keys) + len(prefixes):
        raise RuntimeError("etcd answered a read-only transaction without its listings")
    out: dict[str, _Current] = {}
    for key, listing in zip(keys, listings, strict=False):
        value, meta = listing.items[0] if listing.items else (None, None)
        out[key] = _Current(value, meta)
    networks_raw, services_raw, nodes_raw = listings[len(keys):]
    revision = max(item.revision for item in listings)
    networks = {d.name: d for d in _parsed(networks_raw, "Network")
                if isinstance(d, NetworkDocument)}
    services = {d.name: d for d in _parsed(services_raw, "Service")
                if isinstance(d, ServiceDocument)}
    return _Snapshot(out, revision, networks, services, _node_records(nodes_raw))


def _parsed(listing: Listing, kind: str) -> list[Document]:
    """The stored documents that parse; an invalid one is left out (get shows it)."""
    out: list[Document] = []
    for value, _meta in listing.items:
        try:
            out.append(parse_document(kind, value))
        except ManifestError:
            continue
    return out


def _node_records(listing: Listing) -> list[NodeRecord]:
    nodes = []
    for value, meta in listing.items:
        try:
            nodes.append(NodeRecord.loads(value))
        except ValueError as exc:
            log.warning("skipping unreadable node record %s: %s", meta.key, exc)
    return nodes


def _check_stored_size(source: str, docs: Sequence[Document], puts: Sequence[txn.Op]) -> None:
    """Refuse a file whose stored JSON would not fit in one etcd transaction.

    The YAML bounds keep it near the file's size, but JSON escapes non-ASCII text
    (``\\u00e9`` for a two-byte ``é``), so a file under 1 MiB can store more.
    """
    total = sum(len(op.value) for op in puts if isinstance(op, txn.Put))
    if total > MAX_STORED_BYTES:
        largest = max(docs, key=lambda d: len(d.to_json()))
        raise ManifestError(
            f"{source}: {largest.kind}/{largest.name}: the file's stored form is {total} "
            f"bytes, more than the limit of {MAX_STORED_BYTES}; split it into several files")


async def delete(
    etcd: KeyValue, refs: Sequence[tuple[str, str]], *, must_exist: bool
) -> list[Applied]:
    """Remove the desired keys of ``refs`` (kind, name) in one transaction."""
    async for attempt in _retrying():
        with attempt:
            return await _delete_once(etcd, refs, must_exist)
    raise AssertionError("unreachable: tenacity reraises")


async def delete_manifest(etcd: KeyValue, source: str, text: str) -> list[Applied]:
    """``delete -f``: every document of the file; absent ones are reported, not errors.

    Without the replica and name limits: a file applied under larger limits (or before
    them) must still be deletable.
    """
    docs = await asyncio.to_thread(load_manifest, source, text, None)
    return await delete(etcd, [(d.kind, d.name) for d in docs], must_exist=False)


async def _delete_once(
    etcd: KeyValue, refs: Sequence[tuple[str, str]], must_exist: bool
) -> list[Applied]:
    keys = [keyspace.desired(kind, name) for kind, name in refs]
    current, _ = await _read(etcd, keys)
    vnis = vni.VniTable.parse(await etcd.get_prefix(keyspace.NETSTATE),
                              await etcd.get_prefix(keyspace.VNI))
    services = await etcd.get_prefix(keyspace.desired_prefix("Service"))
    results = []
    for (kind, name), key in zip(refs, keys, strict=True):
        if current[key].meta is None:
            if must_exist:
                raise NotFoundError(f'{kind.lower()} "{name}" not found')
            results.append(Applied(kind, name, "not found"))
        else:
            results.append(Applied(kind, name, "deleted"))
    doomed = set(keys)
    for value, meta in services.items:
        if meta.key in doomed:
            continue
        try:
            user = parse_document("Service", value)
        except ManifestError:
            continue    # an invalid stored service uses nothing (get shows it as Invalid)
        assert isinstance(user, ServiceDocument)
        for kind, name in refs:
            if kind == "Network" and name in user.spec.attachments():
                raise InUseError(f'network "{name}" is used by service "{user.name}"; '
                                 "delete or change that service first")
    present = [k for k in keys if current[k].meta is not None]
    if not present:
        return results
    compares = [current[k].guard(k) for k in present]
    if any(kind == "Network" and current[key].meta is not None
           for (kind, _), key in zip(refs, keys, strict=True)):
        # "No service uses it" holds only while no service is written after that read.
        compares.append(_RangeUnchanged(keyspace.desired_prefix("Service"), services.revision))
    ops: list[txn.Op] = [txn.delete(k) for k in present]
    for (kind, name), key in zip(refs, keys, strict=True):
        if kind == "Network" and current[key].meta is not None:
            # The VNI goes with the network, in the same transaction.
            released, deletes = vni.release(name, vnis)
            compares += released
            ops += deletes
    ok, _ = await etcd.transaction(compares, ops)
    if not ok:
        raise ConflictError("another client changed the same objects; try again")
    return results
