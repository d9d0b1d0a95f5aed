"""Controller errors and how each one reaches clusterctl as a gRPC status.

    BerthError (berth.errors)
    ├── UserError ─────────────── INVALID_ARGUMENT   bad manifest or request
    │   └── ManifestError                            ``FILE: DOC: PATH: problem``
    ├── TemporaryError ────────── UNAVAILABLE
    │   ├── EtcdUnavailable ───── UNAVAILABLE + part "etcd"   etcd did not answer the controller
    │   ├── ConflictError ─────── ABORTED            concurrent writers kept winning
    │   └── NodeUnavailable ───── UNAVAILABLE + part "agent"  the container's node/agent is gone
    └── PermanentError ────────── FAILED_PRECONDITION
        ├── NotFoundError ─────── NOT_FOUND          no such object
        ├── InUseError ────────── FAILED_PRECONDITION  e.g. deleting a network a service uses
        ├── EtcdError ─────────── INTERNAL           etcd refused a request (a bug or a bad setup)
        └── AgentRejected ─────── (the agent's code)  an agent refused a proxied request

Anything else is a bug and becomes INTERNAL. Used by server.py; raised by store.py,
proxy.py and images.py.
"""

from __future__ import annotations

import grpc

from berth.errors import (
    BerthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TemporaryError,
    UserError,
)
from berth.etcd.errors import EtcdError, EtcdUnavailable

PART_KEY = "berth-unreachable"


class NodeUnavailable(TemporaryError):
    """The node a container is assigned to is not Ready, or its agent does not answer."""


class InUseError(PermanentError):
    """The object is still referenced by another one."""


class AgentRejected(PermanentError):
    """An agent answered a proxied call with an error; keep its status code."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first error of type ``kind`` in its ``raise ... from`` chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def describe(exc: BerthError, etcd_endpoint: str) -> tuple[grpc.StatusCode, str, str]:
    """(status code, one-line details, unreachable part or "") for ``exc``."""
    etcd_down = _cause(exc, EtcdUnavailable)
    if etcd_down is not None:
        return (grpc.StatusCode.UNAVAILABLE,
                f"the controller cannot reach etcd at {etcd_endpoint}: {etcd_down}", "etcd")
    if _cause(exc, NodeUnavailable) is not None:
        return grpc.StatusCode.UNAVAILABLE, str(exc), "agent"
    return grpc_status(exc), str(exc), ""


def grpc_status(exc: BerthError) -> grpc.StatusCode:
    """The status code clusterctl sees for ``exc``; the details are ``str(exc)``."""
    if isinstance(exc, UserError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ConflictError):
        return grpc.StatusCode.ABORTED
    if isinstance(exc, TemporaryError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, EtcdError):
        return grpc.StatusCode.INTERNAL
    if isinstance(exc, AgentRejected):
        return exc.code
    if isinstance(exc, PermanentError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL
