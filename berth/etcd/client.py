"""Asyncio etcd v3 client over our own wire-compatible stubs (protos/etcd).

Owned by berth; used by the controller and the agent. python-etcd3's method names: get,
get_prefix, put, delete, delete_prefix, transaction, lease, watch_prefix, plus status,
member_list and compact. Keys are ``str`` (UTF-8 on the wire), values ``bytes`` (``str``
is encoded).

Every unary call carries the client's timeout. gRPC failures become EtcdUnavailable
(TemporaryError: retry) or EtcdError (PermanentError); see errors.py. The channel is created
lazily on first use so the client can be built before the event loop runs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import grpc

from berth.etcd import txn
from berth.etcd.errors import EtcdError, EtcdUnavailable, from_rpc_error
from berth.etcd.lease import Lease
from berth.etcd.model import (
    Compacted,
    DeleteEvent,
    KVMeta,
    Listing,
    Member,
    PutEvent,
    WatchEvent,
    encode_key,
    encode_value,
    listing_from_range,
    meta_from_kv,
    prefix_range_end,
)
from berth.etcd.watch import PrefixWatch
from berth.metrics import ETCD_ERRORS
from protos.etcd import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "Compacted",
    "DeleteEvent",
    "Etcd3Client",
    "KVMeta",
    "Lease",
    "Listing",
    "Member",
    "PutEvent",
    "WatchEvent",
]

# Ping idle connections so a dead peer breaks long watch streams within ~40s instead of
# hanging; 30s stays above etcd's default --grpc-keepalive-min-time (5s). gRPC's own reconnect
# backoff grows to 120s by default, which would leave us blind long after etcd is back.
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 250),
    # etcd restarts are short; come back within a second of it answering again.
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class _Stubs:
    """The etcd services on one channel, typed by mypy-protobuf's generated stubs."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.watch = rpc_pb2_grpc.WatchStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(channel)
        self.auth = rpc_pb2_grpc.AuthStub(channel)


class Etcd3Client:
    """One gRPC channel to one etcd endpoint ("host:port", optionally with http(s)://)."""

    transactions = txn.Transactions

    def __init__(
        self,
        endpoint: str = "127.0.0.1:2379",
        *,
        ca_cert: str | None = None,
        cert_cert: str | None = None,
        cert_key: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        scheme, _, rest = endpoint.rpartition("://")
        self.endpoint = rest
        self.timeout = timeout
        self._tls = scheme == "https" or ca_cert is not None or cert_cert is not None
        self._ca_cert = ca_cert
        self._cert_cert = cert_cert
        self._cert_key = cert_key
        if (cert_cert is None) != (cert_key is None):
            raise EtcdError("etcd client certificate needs both cert_cert and cert_key")
        self._channel: grpc.aio.Channel | None = None
        self._stubs: _Stubs | None = None

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self._ca_cert),
            private_key=read(self._cert_key),
            certificate_chain=read(self._cert_cert),
        )

    @property
    def stubs(self) -> _Stubs:
        if self._stubs is None:
            if self._tls:
                self._channel = grpc.aio.secure_channel(
                    self.endpoint, self._credentials(), options=_CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.insecure_channel(self.endpoint, options=_CHANNEL_OPTIONS)
            self._stubs = _Stubs(self._channel)
        return self._stubs

    async def __aenter__(self) -> Etcd3Client:
        _ = self.stubs
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._channel = None
        self._stubs = None

    async def _unary(self, method: Any, request: Any, what: str) -> Any:
        try:
            # wait_for_ready: while the channel is between reconnect attempts, wait
            # (up to the timeout) instead of failing at once with UNAVAILABLE.
            return await method(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            ETCD_ERRORS.labels(exc.code().name).inc()
            error = from_rpc_error(exc, what)
            if self._tls and self._cert_cert is None and isinstance(error, EtcdUnavailable):
                # A TLS handshake refused for want of a certificate looks like a dead server.
                error = EtcdUnavailable(f"{error} (this client presents no certificate; an "
                                        "etcd with --client-cert-auth refuses such clients)",
                                        code=error.code)
            raise error from exc

    async def auth(self, rpc: str, request: Any, what: str) -> Any:
        """One call of etcd's Auth service (``rpc`` is its method name); for berth.etcd.rbac."""
        return await self._unary(getattr(self.stubs.auth, rpc), request, what)

    async def status(self) -> dict[str, object]:
        """The member's view: version, leader, raft index/term, db size, store revision."""
        resp: rpc_pb2.StatusResponse = await self._unary(
            self.stubs.maintenance.Status, rpc_pb2.StatusRequest(), "status"
        )
        return {
            "version": resp.version,
            "cluster_id": resp.header.cluster_id,
            "member_id": resp.header.member_id,
            "leader": resp.leader,
            "revision": resp.header.revision,
            "raft_index": resp.raftIndex,
            "raft_term": resp.raftTerm,
            "raft_applied_index": resp.raftAppliedIndex,
            "db_size": resp.dbSize,
            "db_size_in_use": resp.dbSizeInUse,
            "is_learner": resp.isLearner,
            "errors": list(resp.errors),
        }

    async def member_list(self) -> list[Member]:
        """The cluster's members as this endpoint knows them (etcd's Cluster.MemberList)."""
        resp: rpc_pb2.MemberListResponse = await self._unary(
            self.stubs.cluster.MemberList, rpc_pb2.MemberListRequest(linearizable=True),
            "member list")
        return [Member(id=m.ID, name=m.name, peer_urls=tuple(m.peerURLs),
                       client_urls=tuple(m.clientURLs), learner=m.isLearner)
                for m in resp.members]

    async def get(self, key: str) -> tuple[bytes | None, KVMeta | None]:
        """The value and metadata of ``key``, or (None, None) if it does not exist."""
        req = txn.range_request(key, prefix=False)
        resp: rpc_pb2.RangeResponse = await self._unary(self.stubs.kv.Range, req, f"get {key}")
        if not resp.kvs:
            return None, None
        return resp.kvs[0].value, meta_from_kv(resp.kvs[0])

    async def get_prefix(self, prefix: str) -> Listing:
        """Every key under ``prefix``, sorted by key, with the revision of the snapshot."""
        req = txn.range_request(prefix, prefix=True)
        resp: rpc_pb2.RangeResponse = await self._unary(
            self.stubs.kv.Range, req, f"get prefix {prefix}"
        )
        return listing_from_range(resp)

    async def put(self, key: str, value: bytes | str, lease: Lease | int | None = None) -> int:
        """Write ``key``; return the store revision of the write."""
        req = rpc_pb2.PutRequest(
            key=encode_key(key), value=encode_value(value), lease=txn.lease_id(lease)
        )
        resp: rpc_pb2.PutResponse = await self._unary(self.stubs.kv.Put, req, f"put {key}")
        return resp.header.revision

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        return await self._delete_range(encode_key(key), b"", f"delete {key}") > 0

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many there were."""
        raw = encode_key(prefix)
        return await self._delete_range(raw, prefix_range_end(raw), f"delete prefix {prefix}")

    async def _delete_range(self, key: bytes, range_end: bytes, what: str) -> int:
        req = rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end)
        resp: rpc_pb2.DeleteRangeResponse = await self._unary(self.stubs.kv.DeleteRange, req, what)
        return resp.deleted

    async def transaction(
        self, compare: Sequence[object], success: Sequence[object], failure: Sequence[object] = ()
    ) -> tuple[bool, list[Listing | None]]:
        """Run ``success`` if every compare holds, else ``failure``, atomically.

        Returns (succeeded, responses): one entry per op of the branch that ran, a Listing for
        get/get_prefix ops and None for put/delete. Build compares and ops with berth.etcd.txn.
        """
        req = txn.txn_request(compare, success, failure)
        what = txn.describe(compare, success, failure)
        resp: rpc_pb2.TxnResponse = await self._unary(self.stubs.kv.Txn, req, what)
        return resp.succeeded, txn.txn_responses(resp)

    async def compact(self, revision: int, *, physical: bool = True) -> None:
        """Drop history before ``revision``; watches from older revisions then get Compacted."""
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        await self._unary(self.stubs.kv.Compact, req, f"compact to {revision}")

    async def lease(self, ttl: int) -> Lease:
        """Grant a lease of ``ttl`` seconds; keep it with Lease.keepalive()."""
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl)
        resp: rpc_pb2.LeaseGrantResponse = await self._unary(
            self.stubs.lease.LeaseGrant, req, f"grant lease ttl={ttl}"
        )
        if resp.error:
            raise EtcdError(f"etcd grant lease ttl={ttl}: {resp.error}")
        return Lease(resp.ID, resp.TTL, self.stubs.lease, self.timeout)

    def watch_prefix(
        self, prefix: str, start_revision: int | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        """Changes under ``prefix`` from ``start_revision`` (inclusive; None: from now).

        Yields PutEvent/DeleteEvent in revision order, reconnecting on its own; yields
        Compacted(listing) if history was compacted past the position. Runs until the
        consumer stops: ``aclose()`` the generator (contextlib.aclosing) or cancel the task.
        """
        watch = PrefixWatch(self.stubs.watch, self.get_prefix, prefix, start_revision, self.timeout)
        return watch.events()
