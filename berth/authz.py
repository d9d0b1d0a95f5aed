"""Who may call what: roles from the peer certificate's CN, one table, one interceptor.

Both daemons install ``Authorizer`` on their gRPC server when they serve mTLS
(controller/server.py, agent/main.py); nothing else decides access. Roles:

* ``admin`` (CN ``admin``): clusterctl; everything on the controller.
* ``controller`` (CN ``controller``): the controller; the whole agent API.
* ``node`` (CN ``node:<name>``): an agent; on the controller only ImagePull (the
  images it must run). It never reaches the agent API of any node, its own included.

A method missing from ``ALLOWED`` is refused (default deny); a unit test checks that
every method of every served service is in it. The agent API is the controller's
alone, admin included: everything a person does on a node goes through the
controller, so an agent serves exactly one client identity, the one the issue's
"Exec only from a controller certificate" names. A refusal is PERMISSION_DENIED
naming the role and the method; a revoked certificate is UNAUTHENTICATED.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from berth import grpcopts, pki
from berth.tls import Revocations, TlsSettings

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
ADMIN, CONTROLLER, NODE = "admin", "controller", "node"
ANY = frozenset({ADMIN, CONTROLLER, NODE})
_CTL, _AGENT, _HEALTH = "/berth.v1.Controller/", "/berth.v1.Agent/", "/grpc.health.v1.Health/"

ALLOWED: dict[str, frozenset[str]] = {
    **{_CTL + m: frozenset({ADMIN}) for m in (
        "Apply", "Get", "Delete", "Exec", "Logs", "ImageLoad", "NetCheck", "Info")},
    _CTL + "ImagePull": frozenset({ADMIN, NODE}),
    **{_AGENT + m: frozenset({CONTROLLER}) for m in (
        "Exec", "Logs", "Inspect", "ImageLoad", "ImageRemove", "NetDiag")},
    _HEALTH + "Check": ANY,
    _HEALTH + "Watch": ANY,
    _HEALTH + "List": ANY,
}


def role_of(cn: str) -> tuple[str, str | None] | None:
    """``(role, node name)`` for a CN berth issues to gRPC clients; None otherwise."""
    ident = pki.Identity.from_cn(cn)
    if ident is None or ident.kind == "etcd":
        return None
    return ident.kind, ident.name


def decide(method: str, cn: str) -> str | None:
    """None when ``cn`` may call ``method``; else the one-line reason."""
    role = role_of(cn)
    if role is None:
        return f"certificate {cn!r} names no berth role; {_short(method)} refused"
    allowed = ALLOWED.get(method)
    if allowed is None or role[0] not in allowed:
        return f"role {cn} may not call {_short(method)}"
    return None


def _short(method: str) -> str:
    return method.lstrip("/").replace("berth.v1.", "")


def _first(auth: Mapping[str, Iterable[bytes]], key: str) -> bytes | None:
    return next(iter(auth.get(key) or ()), None)


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


class Authorizer(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks every call against ``ALLOWED`` before the servicer sees it."""

    def __init__(self, revocations: Revocations) -> None:
        self._revocations = revocations

    async def check(self, method: str, context: Context) -> None:
        auth = context.auth_context()
        cn_raw, pem = _first(auth, "x509_common_name"), _first(auth, "x509_pem_cert")
        if cn_raw is None or pem is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"{_short(method)}: a client certificate is required")
            return
        cn = cn_raw.decode(errors="replace")
        if self._revocations.is_revoked(pem):
            log.warning("refused %s from %s: certificate revoked", method, cn)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"certificate of {cn} is revoked; {_short(method)} refused")
            return
        reason = decide(method, cn)
        if reason is not None:
            log.warning("refused %s from %s", method, cn)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None:     # an unknown method: grpc answers UNIMPLEMENTED
            return handler
        return _guarded(handler, details.method, self.check)


Check = Callable[[str, Context], Awaitable[None]]


def _guarded(handler: Handler, method: str, check: Check) -> Handler:
    """``handler`` with ``check`` run first, for each of the four call shapes."""
    for attr, make in (("unary_unary", grpc.unary_unary_rpc_method_handler),
                       ("unary_stream", grpc.unary_stream_rpc_method_handler),
                       ("stream_unary", grpc.stream_unary_rpc_method_handler),
                       ("stream_stream", grpc.stream_stream_rpc_method_handler)):
        behavior = getattr(handler, attr)
        if behavior is not None:
            return make(_wrap(behavior, method, check),
                        request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    raise AssertionError(f"{method}: a handler with no behavior")


def _wrap(behavior: Callable[..., Any], method: str, check: Check) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(method, context)
            async for item in behavior(request, context):
                yield item
        return streaming

    async def single(request: Any, context: Context) -> Any:
        await check(method, context)
        return await behavior(request, context)
    return single


def make_server(tls: TlsSettings | None, daemon: str) -> grpc.aio.Server:
    """The daemon's gRPC server: every call authorized when ``tls``, else a loud warning."""
    if tls is None:
        log.warning("%s serves gRPC WITHOUT TLS: anyone who reaches its port may call "
                    "every method (start it with --tlsverify)", daemon)
        return grpc.aio.server(options=grpcopts.server_options())
    revocations = Revocations(tls.revocation_file)
    revocations.load()      # a bad revoked.json stops the start, in one line
    return grpc.aio.server(options=grpcopts.server_options(),
                           interceptors=[Authorizer(revocations)])


def add_port(server: grpc.aio.Server, listen: str, tls: TlsSettings | None) -> int:
    """Bind ``listen``: mTLS (client certificate required) with ``tls``, else plaintext."""
    if tls is None:
        return server.add_insecure_port(listen)
    return server.add_secure_port(listen, tls.server_credentials())
