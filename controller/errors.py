"""Controller errors, and what clusterctl is told when one ends a call.

    BerthError (berth.errors; codes from berth.rpcerrors, the one table)
    ├── UserError ─────────────── INVALID_ARGUMENT   bad manifest or request
    │   └── ManifestError                            ``FILE: DOC: PATH: problem``
    ├── TemporaryError ────────── UNAVAILABLE
    │   ├── EtcdUnavailable ───── UNAVAILABLE + part "etcd"   etcd did not answer the controller
    │   ├── ConflictError ─────── ABORTED            concurrent writers kept winning
    │   └── NodeUnavailable ───── UNAVAILABLE + part "agent"  the container's node/agent is gone
    └── PermanentError ────────── FAILED_PRECONDITION
        ├── NotFoundError ─────── NOT_FOUND          no such object
        ├── InUseError ────────── FAILED_PRECONDITION  e.g. deleting a network a service uses
        ├── AddressError ──────── FAILED_PRECONDITION  no free address (controller.ipam)
        ├── VniExhausted ──────── FAILED_PRECONDITION  every VNI is in use (controller.vni)
        ├── EtcdError ─────────── INTERNAL           etcd refused a request (a bug or a bad setup)
        └── AgentRejected ─────── (the agent's code)  an agent refused a proxied request

``describe`` adds the unreachable part (etcd or agent) found anywhere in the
``raise ... from`` chain; server.py applies it to every RPC with
``berth.rpcerrors.maps_errors``. Raised by store.py, proxy.py and images.py.
"""

from __future__ import annotations

import grpc

from berth.errors import BerthError, PermanentError, TemporaryError
from berth.etcd.errors import EtcdError, EtcdUnavailable
from berth.rpcerrors import Status, one_line, status_code


class NodeUnavailable(TemporaryError):
    """The node a container is assigned to is not Ready, or its agent does not answer."""


class InUseError(PermanentError):
    """The object is still referenced by another one."""


class AgentRejected(PermanentError):
    """An agent answered a proxied call with an error; keep its status code."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.grpc_code = code


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


def describe(exc: BerthError, etcd_endpoint: str) -> Status:
    """(status code, one-line details, unreachable part or "") for ``exc``."""
    etcd_down = _cause(exc, EtcdUnavailable)
    if etcd_down is not None:
        return (grpc.StatusCode.UNAVAILABLE,
                one_line(f"the controller cannot reach etcd at {etcd_endpoint}: {etcd_down}"),
                "etcd")
    if _cause(exc, NodeUnavailable) is not None:
        return grpc.StatusCode.UNAVAILABLE, one_line(str(exc)), "agent"
    if isinstance(exc, EtcdError):
        return grpc.StatusCode.INTERNAL, one_line(str(exc)), ""
    return status_code(exc), one_line(str(exc)), ""
