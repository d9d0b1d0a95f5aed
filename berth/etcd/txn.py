"""Transaction builders in python-etcd3's style: compares and operations for ``transaction``.

    from berth.etcd import txn
    ok, responses = await client.transaction(
        compare=[txn.version(key) == 0],                      # create-if-absent
        success=[txn.put(key, b"v", lease=lease)],
        failure=[txn.get(key)],
    )

Compares: ``value(key)``, ``version(key)``, ``create(key)``, ``mod(key)``, ``lease(key)``, each
compared with ``==``, ``!=``, ``<`` or ``>``. Operations: ``put``, ``delete``, ``delete_prefix``,
``get``, ``get_prefix``. Also reachable as ``client.transactions`` (python-etcd3's spelling).
Used by the controller (optimistic concurrency, fencing) and by the IPAM allocator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from berth.etcd.model import (
    Listing,
    encode_key,
    encode_value,
    listing_from_range,
    prefix_range_end,
)
from protos.etcd import rpc_pb2

_CMP = rpc_pb2.Compare
_RESULTS = {
    "==": _CMP.EQUAL,
    "!=": _CMP.NOT_EQUAL,
    "<": _CMP.LESS,
    ">": _CMP.GREATER,
}


class HasLeaseId(Protocol):
    """Anything with a lease ``id``: berth.etcd.lease.Lease, without importing it here."""

    @property
    def id(self) -> int: ...


def lease_id(lease: HasLeaseId | int | None) -> int:
    if lease is None:
        return 0
    return lease if isinstance(lease, int) else lease.id


@dataclass(frozen=True)
class Compare:
    """One guard of a transaction; build it with ``txn.version(key) == 0`` and friends."""

    key: str
    target: str  # "version" | "create_revision" | "mod_revision" | "value" | "lease"
    op: str  # "==" | "!=" | "<" | ">"
    operand: int | bytes

    def to_pb(self) -> rpc_pb2.Compare:
        targets = {
            "version": _CMP.VERSION,
            "create_revision": _CMP.CREATE,
            "mod_revision": _CMP.MOD,
            "value": _CMP.VALUE,
            "lease": _CMP.LEASE,
        }
        pb = rpc_pb2.Compare(
            result=_RESULTS[self.op], target=targets[self.target], key=encode_key(self.key)
        )
        # The operand goes into the oneof member named after the target, as etcd expects.
        setattr(pb, self.target, self.operand)
        return pb


class _Target:
    """The left-hand side of a compare; the comparison operators build a Compare."""

    def __init__(self, key: str, target: str) -> None:
        self._key = key
        self._target = target

    def _compare(self, op: str, operand: object) -> Compare:
        if self._target == "value":
            if not isinstance(operand, bytes | str):
                raise TypeError(f"value compare needs bytes or str, got {operand!r}")
            return Compare(self._key, self._target, op, encode_value(operand))
        if isinstance(operand, bool) or not isinstance(operand, int):
            raise TypeError(f"{self._target} compare needs an int, got {operand!r}")
        return Compare(self._key, self._target, op, operand)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: object) -> Compare:
        return self._compare("<", other)

    def __gt__(self, other: object) -> Compare:
        return self._compare(">", other)

    __hash__ = None  # type: ignore[assignment]


def value(key: str) -> _Target:
    return _Target(key, "value")


def version(key: str) -> _Target:
    """Version 0 means "the key does not exist": the create-if-absent guard."""
    return _Target(key, "version")


def create(key: str) -> _Target:
    return _Target(key, "create_revision")


def mod(key: str) -> _Target:
    return _Target(key, "mod_revision")


def lease(key: str) -> _Target:
    return _Target(key, "lease")


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0

    def to_pb(self) -> rpc_pb2.RequestOp:
        req = rpc_pb2.PutRequest(key=encode_key(self.key), value=self.value, lease=self.lease)
        return rpc_pb2.RequestOp(request_put=req)


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False

    def to_pb(self) -> rpc_pb2.RequestOp:
        key = encode_key(self.key)
        end = prefix_range_end(key) if self.prefix else b""
        return rpc_pb2.RequestOp(
            request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=end)
        )


@dataclass(frozen=True)
class Get:
    key: str
    prefix: bool = False

    def to_pb(self) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_range=range_request(self.key, prefix=self.prefix))


Op = Put | Delete | Get


def put(key: str, value: bytes | str, lease: HasLeaseId | int | None = None) -> Put:
    return Put(key, encode_value(value), lease_id(lease))


def delete(key: str) -> Delete:
    return Delete(key)


def delete_prefix(prefix: str) -> Delete:
    return Delete(prefix, prefix=True)


def get(key: str) -> Get:
    return Get(key)


def get_prefix(prefix: str) -> Get:
    return Get(prefix, prefix=True)


def range_request(key: str, *, prefix: bool) -> rpc_pb2.RangeRequest:
    raw = encode_key(key)
    if not prefix:
        return rpc_pb2.RangeRequest(key=raw)
    return rpc_pb2.RangeRequest(
        key=raw,
        range_end=prefix_range_end(raw),
        sort_order=rpc_pb2.RangeRequest.ASCEND,
        sort_target=rpc_pb2.RangeRequest.KEY,
    )


def txn_request(
    compare: Sequence[object], success: Sequence[object], failure: Sequence[object]
) -> rpc_pb2.TxnRequest:
    """Build the TxnRequest, refusing anything that is not one of our builders."""
    for item in compare:
        if not isinstance(item, Compare):
            raise TypeError(f"transaction compare must be txn.Compare, got {item!r}")
    for item in (*success, *failure):
        if not isinstance(item, Put | Delete | Get):
            raise TypeError(f"transaction op must be txn.put/delete/get..., got {item!r}")
    return rpc_pb2.TxnRequest(
        compare=[c.to_pb() for c in compare if isinstance(c, Compare)],
        success=[op.to_pb() for op in success if isinstance(op, Put | Delete | Get)],
        failure=[op.to_pb() for op in failure if isinstance(op, Put | Delete | Get)],
    )


def describe(compare: Sequence[object], success: Sequence[object], failure: Sequence[object],
             *, most: int = 3) -> str:
    """ "transaction on K1, K2 and 3 more": the keys an error message should name."""
    keys: list[str] = []
    for item in (*success, *failure, *compare):
        key = getattr(item, "key", None)
        if isinstance(key, str) and key not in keys:
            keys.append(key)
    if not keys:
        return "transaction"
    shown = ", ".join(keys[:most])
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return f"transaction on {shown}{more}"


def txn_responses(resp: rpc_pb2.TxnResponse) -> list[Listing | None]:
    """A Listing for each get/get_prefix op, None for puts and deletes, in op order."""
    out: list[Listing | None] = []
    for op in resp.responses:
        if op.WhichOneof("response") == "response_range":
            listing = listing_from_range(op.response_range)
            if listing.revision == 0:
                # Inner headers may be left empty; the txn's own header has the revision.
                listing = Listing(items=listing.items, revision=resp.header.revision)
            out.append(listing)
        else:
            out.append(None)
    return out


class Transactions:
    """The builders as attributes, so ``client.transactions.version(key) == 0`` works."""

    value = staticmethod(value)
    version = staticmethod(version)
    create = staticmethod(create)
    mod = staticmethod(mod)
    lease = staticmethod(lease)
    put = staticmethod(put)
    delete = staticmethod(delete)
    delete_prefix = staticmethod(delete_prefix)
    get = staticmethod(get)
    get_prefix = staticmethod(get_prefix)
