"""watch_prefix: a resumable, compaction-aware stream of changes under a key prefix.

Called through Etcd3Client.watch_prefix by the agent (assignments, endpoints) and the
controller (nodes, status). Watch events are wake-ups: consumers re-read state; this module
only promises that no revision after the start is skipped silently.

Design notes:
- The position is ``next_rev``: after each event it is the event's revision + 1, after a
  progress notification the header revision + 1. A broken stream or channel is reopened from
  there, so nothing is lost or repeated across reconnects. Opening (create + the "created"
  answer) is retried by tenacity with capped backoff, only for UNAVAILABLE-like errors.
- If the start revision has been compacted, etcd cancels the watcher with compact_revision
  set. Events in between are gone for good, so we re-list the prefix, yield Compacted(listing)
  for the consumer to diff against, and resume at listing.revision + 1 (flannel's Reset).
- progress_notify keeps ``next_rev`` fresh on quiet prefixes, so a reconnect after a long idle
  period does not ask for a revision that has since been compacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

import grpc
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from berth.etcd.errors import (
    STREAM_EOF,
    EtcdError,
    EtcdPermissionDenied,
    EtcdUnavailable,
    from_finished_call,
    from_rpc_error,
    is_transient,
)
from berth.etcd.model import (
    Compacted,
    Listing,
    WatchEvent,
    encode_key,
    event_from_pb,
    prefix_range_end,
)
from berth.metrics import ETCD_ERRORS
from protos.etcd import rpc_pb2, rpc_pb2_grpc

log = logging.getLogger(__name__)

Lister = Callable[[str], Awaitable[Listing]]
WatchCall = grpc.aio.StreamStreamCall[rpc_pb2.WatchRequest, rpc_pb2.WatchResponse]


class _Restart(Exception):
    """The stream must be reopened from ``next_rev`` (broken, or re-listed after compaction)."""


class PrefixWatch:
    """State of one watch_prefix: the stub, where to resume, and how to re-list."""

    def __init__(
        self,
        stub: rpc_pb2_grpc.WatchAsyncStub,
        lister: Lister,
        prefix: str,
        start_revision: int | None,
        timeout: float,
    ) -> None:
        self._stub = stub
        self._lister = lister
        self._prefix = prefix
        self._timeout = timeout
        # 0 asks etcd for "from now"; the created answer's header then pins the position.
        self.next_rev = start_revision or 0

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s; reconnecting from revision %d", exc, self.next_rev)

    async def events(self) -> AsyncGenerator[WatchEvent, None]:
        while True:
            opened: tuple[WatchCall, rpc_pb2.WatchResponse] = await self._retrying()(self._open)
            call, created = opened
            try:
                async with aclosing(self._drain(call, created)) as stream:
                    async for event in stream:
                        yield event
            except EtcdUnavailable as exc:
                log.warning("watch %s: stream broke (%s)", self._prefix, exc)
            except _Restart:
                pass
            finally:
                call.cancel()

    async def _open(self) -> tuple[WatchCall, rpc_pb2.WatchResponse]:
        """Open a Watch stream; return it with etcd's "created" answer."""
        key = encode_key(self._prefix)
        create = rpc_pb2.WatchCreateRequest(
            key=key,
            range_end=prefix_range_end(key),
            start_revision=self.next_rev,
            progress_notify=True,
        )
        what = f"watch {self._prefix}"
        # grpc.aio lets a stream opened without an iterator be fed with write();
        # grpc-stubs only knows the iterator form.
        call = self._stub.Watch()  # type: ignore[call-arg]
        try:
            await call.write(rpc_pb2.WatchRequest(create_request=create))
            # The stream has no deadline; a live server answers "created" at once.
            async with asyncio.timeout(self._timeout):
                resp = await self._read(call)
            if not resp.created:
                raise EtcdError(f"etcd {what}: first answer was not 'created'")
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            ETCD_ERRORS.labels(exc.code().name).inc()
            raise from_rpc_error(exc, what) from exc
        except asyncio.InvalidStateError as exc:
            call.cancel()
            raise await from_finished_call(call, what) from exc
        except TimeoutError as exc:
            call.cancel()
            raise EtcdUnavailable(f"etcd {what}: not created within {self._timeout}s") from exc
        except BaseException:
            call.cancel()
            raise
        if self.next_rev == 0:
            self.next_rev = resp.header.revision + 1
        return call, resp

    async def _read(self, call: WatchCall) -> rpc_pb2.WatchResponse:
        try:
            resp = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"watch {self._prefix}") from exc
        if resp is STREAM_EOF:
            raise EtcdUnavailable(f"etcd watch {self._prefix}: stream closed by the server")
        assert isinstance(resp, rpc_pb2.WatchResponse)
        return resp

    async def _drain(
        self, call: WatchCall, created: rpc_pb2.WatchResponse
    ) -> AsyncGenerator[WatchEvent, None]:
        resp = created
        while True:
            # etcd 3.4 sends "created" and then the compaction cancel as a second answer;
            # handling both on every answer also covers servers that combine them.
            if resp.compact_revision:
                yield await self._relist(resp.compact_revision)
                raise _Restart
            if resp.canceled:
                # etcd 3.4 refuses an unpermitted watch as "created" and canceled at once.
                if "permission denied" in resp.cancel_reason:
                    raise EtcdPermissionDenied(
                        f"etcd refused watch {self._prefix}: permission denied "
                        "(the etcd user is the client certificate's CN)")
                raise EtcdError(f"etcd canceled watch {self._prefix}: {resp.cancel_reason}")
            for pb in resp.events:
                event = event_from_pb(pb)
                self.next_rev = event.meta.mod_revision + 1
                yield event
            if not resp.events and not resp.created:
                # A progress notification: every later event is above header.revision.
                self.next_rev = max(self.next_rev, resp.header.revision + 1)
            resp = await self._read(call)

    async def _relist(self, compact_revision: int) -> Compacted:
        log.info(
            "watch %s: revision %d compacted (oldest is %d); re-listing",
            self._prefix,
            self.next_rev,
            compact_revision,
        )
        listing: Listing = await self._retrying()(self._lister, self._prefix)
        self.next_rev = listing.revision + 1
        return Compacted(listing)
