"""The values the etcd client hands out, and their conversion from the wire messages.

Frozen dataclasses built once from protobuf (mvccpb.KeyValue, RangeResponse), so callers never
see protobuf types. Keys are ``str`` (UTF-8 on the wire), values stay ``bytes``. Used by
client.py, txn.py and watch.py; re-exported from berth.etcd.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.etcd import kv_pb2, rpc_pb2


@dataclass(frozen=True)
class KVMeta:
    key: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class Listing:
    """A consistent snapshot of a prefix: items sorted by key, and the store revision."""

    items: tuple[tuple[bytes, KVMeta], ...]
    revision: int


@dataclass(frozen=True)
class PutEvent:
    key: str
    value: bytes
    meta: KVMeta


@dataclass(frozen=True)
class DeleteEvent:
    key: str
    meta: KVMeta  # mod_revision is the delete's revision


@dataclass(frozen=True)
class Compacted:
    """The watch start revision was compacted; the client re-listed the prefix.

    Consumers must treat ``listing`` as the full truth and diff against it.
    The watch continues from ``listing.revision + 1``.
    """

    listing: Listing


WatchEvent = PutEvent | DeleteEvent | Compacted


def encode_key(key: str) -> bytes:
    return key.encode("utf-8")


def encode_value(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def prefix_range_end(prefix: bytes) -> bytes:
    """The exclusive end of the range holding every key that starts with ``prefix``.

    etcd ranges are [key, range_end). Incrementing the last byte gives the first key past the
    prefix; a trailing 0xff cannot be incremented, so it is dropped and the byte before it is
    bumped instead ("a\\xff" -> "b"). With nothing left (empty or all-0xff prefix), b"\\0"
    means "to the end of the keyspace".
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def meta_from_kv(kv: kv_pb2.KeyValue) -> KVMeta:
    return KVMeta(
        key=kv.key.decode("utf-8"),
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
    )


def listing_from_range(resp: rpc_pb2.RangeResponse) -> Listing:
    # The request asks etcd to sort by key ascending; sorting is done server side.
    items = tuple((kv.value, meta_from_kv(kv)) for kv in resp.kvs)
    return Listing(items=items, revision=resp.header.revision)


def event_from_pb(event: kv_pb2.Event) -> PutEvent | DeleteEvent:
    meta = meta_from_kv(event.kv)
    if event.type == kv_pb2.Event.DELETE:
        return DeleteEvent(key=meta.key, meta=meta)
    return PutEvent(key=meta.key, value=event.kv.value, meta=meta)


@dataclass(frozen=True)
class Member:
    """One etcd cluster member (Cluster.MemberList)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool = False
