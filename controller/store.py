"""Desired state in etcd: Apply and Delete as all-or-nothing transactions.

Called by server.py. Each request reads the keys it will touch (and the
networks its services reference), decides, then writes everything in ONE
transaction whose compares pin every key to the mod revision just read
(optimistic concurrency). A lost race is retried a few times from a fresh read;
after that the caller gets ConflictError.

Stored value: the validated document as canonical JSON (apiVersion, kind,
metadata, spec), so equal files compare equal and re-apply is "unchanged".

Deleting a network is refused while a service uses it. The Delete transaction
guards the whole service range (no service key written after the read), not only
the services it saw: otherwise an Apply creating a new service on the network
could commit in between and leave that service attached to nothing.

Parsing runs on a worker thread (asyncio.to_thread): berth.yamlsafe bounds its work, and
the event loop keeps answering Get and the scheduler meanwhile. Limits (max replicas,
name lengths) come from the controller's flags (berth.limits).

A new network's subnet must not overlap any Ready node's own addresses or non-default
routes (NodeRecord.addresses/routes, reported by the agents): a container would take a
host's address or hide a route. Nodes that join later with an overlapping address are
the scheduler's business (placement.py keeps the network's containers off them).

Overlay networks get their VNI (vni.py) in the Apply transaction that creates
them (or that re-applies one found without a VNI) and lose it in the Delete
transaction that removes them.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
from berth.netaddr import is_assignable
from berth.records import NodeRecord
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
    current, revision = await _read(etcd, keys + ref_keys + state_keys)
    networks: dict[str, NetworkDocument] = dict(in_file)
    for name, key in zip(referenced, ref_keys, strict=True):
        raw = current[key].value
        doc = parse_document("Network", raw) if raw is not None else None
        if isinstance(doc, NetworkDocument):
            networks[name] = doc
    results: list[Applied] = []
    puts: list[txn.Op] = []
    new_networks = [d for d, k in zip(docs, keys, strict=True)
                    if isinstance(d, NetworkDocument) and current[k].value is None]
    if new_networks:
        await _check_underlay(etcd, source, new_networks)
    for doc, key in zip(docs, keys, strict=True):
        _check_references(source, doc, networks)
        body = doc.to_json()
        old = current[key].value
        if old is not None and isinstance(doc, NetworkDocument):
            _check_network_change(source, doc, old)
        action = "created" if old is None else "unchanged" if old == body else "configured"
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
    compares = [current[k].guard(k) for k in keys + ref_keys] + vni_compares
    ok, responses = await etcd.transaction(compares, [*puts, txn.get(keys[0])])
    if not ok:
        raise ConflictError(f"{source}: another client changed the same objects; try again")
    last = responses[-1]
    return results, last.revision if isinstance(last, Listing) else revision


def _check_references(source: str, doc: Document, networks: dict[str, NetworkDocument]) -> None:
    if not isinstance(doc, ServiceDocument):
        return
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
        subnet = net.spec.network()
        if not is_assignable(opts.ip, subnet, net.spec.gateway or ""):
            raise ManifestError(f"{where}.{name}.ip: {opts.ip} is not a free host address "
                                f"of {subnet} (network {name})")


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


async def _check_underlay(
    etcd: KeyValue, source: str, networks: Sequence[NetworkDocument]
) -> None:
    """Refuse a new network whose subnet collides with a Ready node's addresses or routes.

    An existing network is not re-checked: its containers already run, and a node that
    joined since is kept free of it by the scheduler.
    """
    # macvlan (not implemented yet) will be the exception: it may share its parent
    # interface's LAN subnet, with IPAM skipping the nodes' addresses and the gateway.
    listing = await etcd.get_prefix(keyspace.NODES)
    nodes = []
    for value, meta in listing.items:
        try:
            nodes.append(NodeRecord.loads(value))
        except ValueError as exc:
            log.warning("skipping unreadable node record %s: %s", meta.key, exc)
    for doc in networks:
        subnet = doc.spec.network()
        for node in sorted(nodes, key=lambda n: n.name):
            clash = node.overlap(subnet)
            if clash is not None:
                raise ManifestError(
                    f"{source}: Network/{doc.name}: spec.subnet: {subnet} overlaps {clash}; "
                    "pick a range that no node uses")


def _check_network_change(source: str, doc: NetworkDocument, old_raw: bytes) -> None:
    # Addresses already handed out and VXLAN state on every host depend on these;
    # Docker treats networks as immutable for the same reason.
    try:
        old = parse_document("Network", old_raw)
    except ManifestError:
        return      # replacing an invalid stored network is how it gets repaired
    assert isinstance(old, NetworkDocument)
    for name in ("driver", "subnet", "gateway"):
        before, after = getattr(old.spec, name), getattr(doc.spec, name)
        if before != after:
            raise ManifestError(
                f"{source}: Network/{doc.name}: spec.{name}: cannot change a network's {name} "
                f"({before} -> {after}); delete the network and apply it again")


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
