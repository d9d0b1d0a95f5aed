"""Errors the etcd client raises, split by what the caller should do about them.

    BerthError
    ├── TemporaryError
    │   └── EtcdUnavailable      etcd unreachable, timed out or leaderless: retry after ``delay``
    └── PermanentError
        └── EtcdError            etcd refused the request (bad argument, compacted, not found...)
            ├── LeaseLost        the lease expired or was revoked: grant a new one, re-put its keys
            └── EtcdPermissionDenied  RBAC: this client's user (its certificate CN) may not do it

Every gRPC failure leaves berth.etcd as one of these (``raise ... from`` the grpc error);
``code`` keeps the gRPC status so callers can tell e.g. NOT_FOUND apart without string matching.
Used by client.py, lease.py and watch.py; callers catch the base classes from berth.errors.
"""

from __future__ import annotations

from typing import Any

import grpc

from berth.errors import PermanentError, TemporaryError

# Codes after which the same request may well succeed: the server or the connection is down,
# a leader election is under way ("etcdserver: no leader" is UNAVAILABLE), or we timed out.
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


# What StreamStreamCall.read() returns once the server half-closes (missing from grpc-stubs).
STREAM_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


class EtcdUnavailable(TemporaryError):
    """etcd could not be reached or did not answer in time."""

    def __init__(
        self, message: str, *, code: grpc.StatusCode | None = None, delay: float = 1.0
    ) -> None:
        super().__init__(message, delay=delay)
        self.code = code


class EtcdError(PermanentError):
    """etcd answered with an error that retrying the same request will not fix."""

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class LeaseLost(EtcdError):
    """The lease is gone (TTL 0, revoked, or unreachable etcd for longer than the TTL)."""

    def __init__(self, lease_id: int, reason: str) -> None:
        super().__init__(f"etcd lease {lease_id:x} lost: {reason}")
        self.lease_id = lease_id


class EtcdPermissionDenied(EtcdError):
    """etcd's RBAC refused the request: the message names the operation and its keys."""


# etcd's own words for an auth failure; the gRPC code alone (e.g. FAILED_PRECONDITION for
# "user name not found") is shared with unrelated errors.
_AUTH_DETAILS = ("permission denied", "user name is empty", "user name not found",
                 "invalid auth token", "authentication failed")


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: what tenacity's retry predicates ask."""
    if isinstance(exc, EtcdUnavailable):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in TRANSIENT_CODES


def from_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> EtcdUnavailable | EtcdError:
    """Translate a gRPC failure of ``what`` (e.g. "put /berth/x") into our hierarchy."""
    return from_status(exc.code(), exc.details(), what)


async def from_finished_call(call: Any, what: str) -> EtcdUnavailable | EtcdError:
    """The error of a stream that already ended (write() then raises InvalidStateError)."""
    return from_status(await call.code(), await call.details(), what)


def from_status(
    code: grpc.StatusCode, details: str | None, what: str
) -> EtcdUnavailable | EtcdError:
    reason = (details or "").removeprefix("etcdserver: ")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED) or any(
        d in reason for d in _AUTH_DETAILS
    ):
        return EtcdPermissionDenied(
            f"etcd refused {what}: {reason or 'permission denied'} "
            "(the etcd user is the client certificate's CN)", code=code)
    message = f"etcd {what}: {code.name}: {details or 'no details'}"
    if code in TRANSIENT_CODES:
        return EtcdUnavailable(message, code=code)
    return EtcdError(message, code=code)
