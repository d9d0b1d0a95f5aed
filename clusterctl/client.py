"""How clusterctl finds and talks to the controller.

The address comes from ``--controller``, else ``BERTH_CONTROLLER``, else the lab
most recently brought up. gRPC failures become one-line ``CtlError``s that
main() prints; nothing here exits.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from berth.errors import UserError
from protos import controller_pb2_grpc

# gRPC codes that mean "your input" rather than "berth broke".
_USER_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}


class CtlError(UserError):
    """One line for the person at the terminal; ``berth_failed`` when berth itself broke."""

    def __init__(self, message: str, *, berth_failed: bool = False) -> None:
        super().__init__(message)
        self.berth_failed = berth_failed


def controller_address(flag: str | None) -> str:
    if flag:
        return flag
    env = os.environ.get("BERTH_CONTROLLER")
    if env:
        return env
    from clusterctl.lab import current

    lab = current()
    if lab is None:
        raise CtlError(
            "no controller: pass --controller, set BERTH_CONTROLLER, or run 'clusterctl lab up'"
        )
    return lab.controller


def rpc_error(exc: grpc.aio.AioRpcError, address: str) -> CtlError:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE and "agent" not in (exc.details() or ""):
        return CtlError(
            f"cannot reach the controller at {address}: {exc.details()}", berth_failed=True
        )
    return CtlError(exc.details() or code.name, berth_failed=code not in _USER_CODES)


@asynccontextmanager
async def connect(flag: str | None) -> AsyncIterator[controller_pb2_grpc.ControllerStub]:
    address = controller_address(flag)
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        try:
            yield controller_pb2_grpc.ControllerStub(channel)  # type: ignore[no-untyped-call]
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, address) from exc
