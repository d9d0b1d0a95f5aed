"""How clusterctl finds and talks to the controller, and what each failure exits with.

Which controller, and with which certificate, comes from clusterctl.contexts
(``--context``, ``BERTH_CONTEXT``, the current context; or a bare ``--controller``
address in plaintext). gRPC failures become one-line ``CtlError``s carrying
their exit code (``ExitCode``, the table in the README); main() prints and exits,
nothing here does. Which part failed is told apart here, in one place:

* clusterctl's own channel fails (UNAVAILABLE, no part) -> the controller is unreachable;
* the controller answers UNAVAILABLE with ``berth-unreachable: etcd`` -> etcd is;
* ... with ``berth-unreachable: agent`` -> the agent of a node is.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from berth import grpcopts, tls
from berth.errors import UserError
from berth.rpcerrors import PART_KEY
from clusterctl import contexts
from protos import controller_pb2_grpc


class ExitCode(enum.IntEnum):
    """clusterctl's exit statuses; README.md lists them. exec/logs use 125 for all of these."""

    OK = 0
    USER_ERROR = 1          # bad input: manifest, flag value, refused request
    USAGE = 2               # unknown command or option (click's own code)
    NOT_FOUND = 3
    CONTROLLER_UNREACHABLE = 4
    ETCD_UNREACHABLE = 5
    AGENT_UNREACHABLE = 6
    CONFLICT = 7            # concurrent writers, or the object already exists
    INTERNAL = 8            # a bug in berth: the controller failed unexpectedly
    NETCHECK_FAILED = 9     # netcheck: a pair does not behave as its network promises
    BERTH_FAILED = 125      # exec/logs: berth failed, the command did not run (as docker)
    INTERRUPTED = 130


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.USER_ERROR,
    grpc.StatusCode.FAILED_PRECONDITION: ExitCode.USER_ERROR,
    grpc.StatusCode.OUT_OF_RANGE: ExitCode.USER_ERROR,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ExitCode.USER_ERROR,
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: ExitCode.CONFLICT,
    grpc.StatusCode.ABORTED: ExitCode.CONFLICT,
    grpc.StatusCode.CANCELLED: ExitCode.INTERRUPTED,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.USER_ERROR,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.USER_ERROR,
}
_REFUSED = {grpc.StatusCode.PERMISSION_DENIED: "permission denied",
            grpc.StatusCode.UNAUTHENTICATED: "not authenticated"}
_PARTS = {"etcd": ExitCode.ETCD_UNREACHABLE, "agent": ExitCode.AGENT_UNREACHABLE}
_USER_CODES = {ExitCode.USER_ERROR, ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.CONFLICT}


class CtlError(UserError):
    """One line for the person at the terminal, and the exit status it means."""

    def __init__(
        self, message: str, *, exit_code: ExitCode | None = None, berth_failed: bool = False
    ) -> None:
        super().__init__(message)
        if exit_code is None:
            exit_code = ExitCode.INTERNAL if berth_failed else ExitCode.USER_ERROR
        self.exit_code = exit_code

    @property
    def berth_failed(self) -> bool:
        """True when berth itself (not the request) is what failed."""
        return self.exit_code not in _USER_CODES


@dataclass(frozen=True)
class Selection:
    """What the command line named: a context, a controller address, both or neither."""

    context: str | None = None
    controller: str | None = None


Where = Selection | str | None      # a bare string is a plaintext controller address


def target(where: Where) -> contexts.Target:
    sel = where if isinstance(where, Selection) else Selection(controller=where)
    return contexts.resolve(sel.context, sel.controller)


def _part(exc: grpc.aio.AioRpcError) -> str:
    # grpc.aio hands back a Metadata object; its stubs still say a tuple of pairs.
    pairs: Any = exc.trailing_metadata() or ()
    for key, value in pairs:
        if key == PART_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def rpc_error(exc: grpc.aio.AioRpcError, address: str) -> CtlError:
    code, details = exc.code(), (exc.details() or exc.code().name)
    part = _part(exc)
    if part in _PARTS:
        return CtlError(details, exit_code=_PARTS[part])
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return CtlError(f"cannot reach the controller at {address}: {details}",
                        exit_code=ExitCode.CONTROLLER_UNREACHABLE)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return CtlError(f"message too large: {details} (berth's limits: "
                        f"{grpcopts.MAX_REQUEST >> 20} MiB per request, "
                        f"{grpcopts.MAX_RESPONSE >> 20} MiB per response)",
                        exit_code=ExitCode.USER_ERROR)
    if code in _REFUSED:
        return CtlError(f"{_REFUSED[code]}: {details}", exit_code=ExitCode.USER_ERROR)
    return CtlError(details, exit_code=_BY_CODE.get(code, ExitCode.INTERNAL))


@asynccontextmanager
async def connect(where: Where) -> AsyncIterator[controller_pb2_grpc.ControllerAsyncStub]:
    dest = target(where)
    address = dest.address
    options = grpcopts.channel_options()
    async with tls.channel(address, dest.tls, options) as channel:
        try:
            yield controller_pb2_grpc.ControllerStub(channel)
        except grpc.aio.AioRpcError as exc:
            error = rpc_error(exc, address)
            if dest.tls is None and error.exit_code == ExitCode.CONTROLLER_UNREACHABLE:
                error = CtlError(f"{error} (this was plaintext: a controller that serves "
                                 "mTLS needs a context, see `clusterctl config get-contexts`)",
                                 exit_code=error.exit_code)
            raise error from exc
