"""How berth's errors become gRPC statuses: one table, applied once per servicer.

Both daemons decorate their servicer class with ``maps_errors``; handlers then just
raise. The table (details are always ``str(exc)``, one line)::

    BerthError
    ├── UserError ──────────── INVALID_ARGUMENT
    ├── TemporaryError ─────── UNAVAILABLE
    │   └── ConflictError ──── ABORTED
    └── PermanentError ─────── FAILED_PRECONDITION
        └── NotFoundError ──── NOT_FOUND

An error that carries its own ``grpc_code`` keeps it (the controller relaying an
agent's refusal). A daemon may add trailing metadata naming the part that could not
be reached (``PART_KEY``: ``etcd`` or ``agent``), so that clusterctl can tell "the
controller cannot reach etcd" from "clusterctl cannot reach the controller", which
are both UNAVAILABLE. Anything that is not a BerthError is a bug: it is logged with
its traceback and answered INTERNAL with a line that names no Python class.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from berth.errors import BerthError, ConflictError, NotFoundError, TemporaryError, UserError

log = logging.getLogger(__name__)

PART_KEY = "berth-unreachable"
Status = tuple[grpc.StatusCode, str, str]      # code, one-line details, unreachable part
Describe = Callable[[Any, BerthError], Status]   # (the servicer, the error)
Context = grpc.aio.ServicerContext[Any, Any]
S = TypeVar("S", bound=type)


def status_code(exc: BerthError) -> grpc.StatusCode:
    """The gRPC code for ``exc`` by the table above."""
    own = getattr(exc, "grpc_code", None)
    if isinstance(own, grpc.StatusCode):
        return own
    if isinstance(exc, UserError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ConflictError):
        return grpc.StatusCode.ABORTED
    if isinstance(exc, TemporaryError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    return grpc.StatusCode.FAILED_PRECONDITION


def one_line(text: str) -> str:
    return " ".join(text.split())


def plain(_servicer: object, exc: BerthError) -> Status:
    """The default description: the table's code, the message, no unreachable part."""
    return status_code(exc), one_line(str(exc)), ""


async def abort(context: Context, exc: Exception, daemon: str, servicer: object = None,
                describe: Describe = plain) -> NoReturn:
    """End the call with ``exc``'s status (see the module docstring)."""
    if isinstance(exc, BerthError):
        code, details, part = describe(servicer, exc)
        await context.abort(code, details,
                            trailing_metadata=((PART_KEY, part),) if part else ())
    log.error("internal error in a %s RPC", daemon, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL,
                        f"internal error in the {daemon}; its log has the details")


def maps_errors(daemon: str, describe: Describe = plain) -> Callable[[S], S]:
    """Class decorator: every RPC method (a capitalised coroutine or async generator
    defined on the class) answers its errors through ``abort``."""

    def decorate(cls: S) -> S:
        for name, fn in list(vars(cls).items()):
            if not name[:1].isupper():
                continue
            if inspect.isasyncgenfunction(fn):
                setattr(cls, name, _stream(fn, daemon, describe))
            elif inspect.iscoroutinefunction(fn):
                setattr(cls, name, _unary(fn, daemon, describe))
        return cls

    return decorate


def _passes(exc: BaseException) -> bool:
    # context.abort() ends a call by raising AbortError; cancellation is not an error.
    return isinstance(exc, grpc.aio.AbortError | asyncio.CancelledError)


def _unary(fn: Callable[..., Any], daemon: str, describe: Describe) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(self: object, request: object, context: Context) -> Any:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            if _passes(exc):
                raise
            await abort(context, exc, daemon, self, describe)

    return handler


def _stream(fn: Callable[..., Any], daemon: str, describe: Describe) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(self: object, request: object, context: Context) -> AsyncIterator[Any]:
        try:
            # aclosing: when grpc closes this stream (the client went away), the handler's
            # own generator is closed at once and runs its cleanup, not at some later GC.
            async with contextlib.aclosing(fn(self, request, context)) as items:
                async for item in items:
                    yield item
        except Exception as exc:
            if _passes(exc):
                raise
            await abort(context, exc, daemon, self, describe)

    return handler
