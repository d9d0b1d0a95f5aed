"""etcd leases: grant is on the client; this module owns refresh, revoke and keepalive.

A Lease is what the agent's registration holds its node key under: while ``keepalive()`` runs
the key stays, when the agent dies the lease expires and etcd deletes the key. Created by
Etcd3Client.lease(); not constructed by callers.

Design notes: keepalive uses one LeaseKeepAlive stream and sends every ttl/3, so two refreshes
can be lost before the lease expires. A broken stream is reopened with backoff (tenacity) for
as long as the lease can still be alive: once etcd has been unreachable past the last known
expiry, the holder must assume the lease is gone (others will) and gets LeaseLost.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from berth.etcd.errors import (
    STREAM_EOF,
    EtcdUnavailable,
    LeaseLost,
    from_finished_call,
    from_rpc_error,
    is_transient,
)
from protos.etcd import rpc_pb2, rpc_pb2_grpc

log = logging.getLogger(__name__)


class Lease:
    """A granted lease: ``id`` to attach keys, ``ttl`` as granted by the server."""

    def __init__(self, lease_id: int, ttl: int, stub: rpc_pb2_grpc.LeaseAsyncStub,
                 timeout: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self._stub = stub  # rpc_pb2_grpc.LeaseStub over the client's channel
        self._timeout = timeout
        # monotonic time by which the server will have dropped the lease without news from us
        self._expires_at = time.monotonic() + ttl

    def __repr__(self) -> str:
        return f"Lease(id={self.id:x}, ttl={self.ttl})"

    async def refresh(self) -> int:
        """Send one keepalive; return the remaining TTL (0: the lease has expired)."""
        call = self._stub.LeaseKeepAlive(timeout=self._timeout)  # type: ignore[call-arg]
        try:
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=self.id))
            await call.done_writing()
            resp = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"refresh lease {self.id:x}") from exc
        except asyncio.InvalidStateError as exc:
            raise await from_finished_call(call, f"refresh lease {self.id:x}") from exc
        finally:
            call.cancel()
        if resp is STREAM_EOF:
            return 0
        assert isinstance(resp, rpc_pb2.LeaseKeepAliveResponse)
        ttl = max(int(resp.TTL), 0)
        self._expires_at = time.monotonic() + ttl
        return ttl

    async def revoke(self) -> None:
        """Revoke the lease: etcd deletes every key attached to it, in one revision."""
        try:
            await self._stub.LeaseRevoke(
                rpc_pb2.LeaseRevokeRequest(ID=self.id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"revoke lease {self.id:x}") from exc

    async def time_to_live(self) -> tuple[int, tuple[str, ...]]:
        """Remaining TTL (-1: expired or unknown) and the keys attached to the lease."""
        try:
            resp = await self._stub.LeaseTimeToLive(
                rpc_pb2.LeaseTimeToLiveRequest(ID=self.id, keys=True), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"time-to-live of lease {self.id:x}") from exc
        return int(resp.TTL), tuple(k.decode("utf-8") for k in resp.keys)

    async def keepalive(self) -> None:
        """Keep the lease alive until cancelled; raise LeaseLost when it is gone."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=self._past_expiry,
            wait=wait_exponential(multiplier=0.1, max=max(self.ttl / 3, 0.1)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            await retrying(self._keepalive_stream)
        except EtcdUnavailable as exc:
            raise LeaseLost(self.id, f"etcd unreachable past the lease's expiry: {exc}") from exc

    def _past_expiry(self, _state: RetryCallState) -> bool:
        return time.monotonic() >= self._expires_at

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s; reconnecting", exc)

    async def _keepalive_stream(self) -> None:
        """One LeaseKeepAlive stream; returns only by raising."""
        interval = max(self.ttl / 3, 0.1)
        what = f"keepalive of lease {self.id:x}"
        # grpc.aio lets a stream opened without an iterator be fed with write();
        # grpc-stubs only knows the iterator form.
        call = self._stub.LeaseKeepAlive()  # type: ignore[call-arg]
        try:
            while True:
                await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=self.id))
                # The stream itself has no deadline, so bound each answer here.
                async with asyncio.timeout(self._timeout):
                    resp = await call.read()
                if resp is STREAM_EOF:
                    raise EtcdUnavailable(f"etcd {what}: stream closed by the server")
                assert isinstance(resp, rpc_pb2.LeaseKeepAliveResponse)
                if resp.TTL <= 0:
                    raise LeaseLost(self.id, "etcd answered TTL 0 (expired or revoked)")
                self._expires_at = time.monotonic() + resp.TTL
                await asyncio.sleep(interval)
        except TimeoutError as exc:
            raise EtcdUnavailable(f"etcd {what}: no answer within {self._timeout}s") from exc
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, what) from exc
        except asyncio.InvalidStateError as exc:
            raise await from_finished_call(call, what) from exc
        finally:
            call.cancel()
