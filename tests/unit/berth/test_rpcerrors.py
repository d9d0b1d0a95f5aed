from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from berth.errors import (
    ConflictError,
    ManifestError,
    NotFoundError,
    PermanentError,
    TemporaryError,
    UserError,
)
from berth.rpcerrors import PART_KEY, maps_errors, status_code


class Aborted(Exception):
    """What the fake context raises, as grpc.aio's abort() ends a call by raising."""


class FakeContext:
    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str, Any] | None = None

    async def abort(self, code: grpc.StatusCode, details: str,
                    trailing_metadata: Any = ()) -> None:
        self.status = (code, details, tuple(trailing_metadata))
        raise Aborted


class Relayed(PermanentError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("exc", "code"), [
    (UserError("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (ManifestError("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (TemporaryError("x"), grpc.StatusCode.UNAVAILABLE),
    (ConflictError("x"), grpc.StatusCode.ABORTED),
    (PermanentError("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
    (Relayed("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
], ids=["user", "manifest", "temporary", "conflict", "permanent", "not-found", "own-code"])
def test_one_table(exc: Exception, code: grpc.StatusCode) -> None:
    assert status_code(exc) is code  # type: ignore[arg-type]


@maps_errors("agent", lambda _svc, exc: (status_code(exc), str(exc), "etcd"))
class Service:
    async def Unary(self, request: Exception, context: FakeContext) -> str:
        raise request

    async def Stream(self, request: Exception, context: FakeContext) -> AsyncIterator[str]:
        yield "first"
        raise request


async def test_unary_errors_become_statuses_with_the_part() -> None:
    ctx = FakeContext()
    with pytest.raises(Aborted):
        await Service().Unary(NotFoundError('container "x" not found'), ctx)
    assert ctx.status == (grpc.StatusCode.NOT_FOUND, 'container "x" not found',
                          ((PART_KEY, "etcd"),))


async def test_stream_errors_after_frames_and_bugs_name_no_class() -> None:
    ctx = FakeContext()
    got = []
    with pytest.raises(Aborted):
        async for item in Service().Stream(KeyError("secret"), ctx):
            got.append(item)
    assert got == ["first"]
    assert ctx.status is not None
    code, details, _ = ctx.status
    assert code is grpc.StatusCode.INTERNAL
    assert details == "internal error in the agent; its log has the details"
    assert "KeyError" not in details and "secret" not in details


async def test_closing_the_stream_closes_the_handler_at_once() -> None:
    cleaned: list[str] = []

    @maps_errors("agent")
    class Streams:
        async def Follow(self, request: object, context: FakeContext) -> AsyncIterator[int]:
            try:
                yield 1
                yield 2
            finally:
                cleaned.append("handler")

    stream = Streams().Follow(None, FakeContext())
    assert await anext(stream) == 1  # type: ignore[arg-type]
    await stream.aclose()  # type: ignore[attr-defined]
    assert cleaned == ["handler"]
