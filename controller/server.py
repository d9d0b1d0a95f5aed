"""The Controller gRPC service (protos/controller.proto) and the server that hosts it.

Built by main.py; tests start it with ``start_server``. Each RPC delegates:
Apply/Delete to store.py, Get to state.py + placement.py, Exec/Logs to
proxy.py, ImageLoad/ImagePull to images.py, Info to info.py. Handlers raise;
``maps_errors`` (berth's one table, plus controller.errors.describe) turns errors into
gRPC statuses with a one-line message as the details, which clusterctl prints as is; a
failure to reach etcd or an agent also says which part in the trailing metadata. Message
sizes are bounded by berth.grpcopts. NetCheck (clusterctl netcheck) delegates to netcheck.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from berth import authz
from berth.daemonflags import EtcdSettings
from berth.errors import BerthError, UserError
from berth.etcd import KeyValue
from berth.imagelimits import MAX_ARCHIVE_BYTES
from berth.limits import DEFAULT_LIMITS, Limits
from berth.rpcerrors import Status, maps_errors
from berth.tls import TlsSettings
from controller import getters, info, netcheck, proxy, store
from controller.errors import describe
from controller.images import ImageStore, read_chunks
from controller.info import InfoSource
from controller.scheduler import Scheduler
from controller.state import read_state
from protos import common_pb2, controller_pb2, controller_pb2_grpc, netcheck_pb2

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "berth.v1.Controller"
# grpc_health ships its asyncio servicer without type stubs.
AioHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


def _results(items: list[store.Applied]) -> list[controller_pb2.AppliedObject]:
    return [controller_pb2.AppliedObject(kind=i.kind, name=i.name, action=i.action)
            for i in items]


def _describe(service: ControllerService, exc: BerthError) -> Status:
    return describe(exc, service.etcd_endpoint)


@maps_errors("controller", _describe)
class ControllerService(controller_pb2_grpc.ControllerServicer):
    """Each RPC delegates and raises; maps_errors turns what it raises into a status."""

    def __init__(self, etcd: KeyValue, images: ImageStore, scheduler: Scheduler | None,
                 limits: Limits = DEFAULT_LIMITS,
                 dialer: proxy.AgentDialer = proxy.PLAINTEXT,
                 info: InfoSource | None = None) -> None:
        self._etcd = etcd
        self._dialer = dialer
        self._images = images
        self._scheduler = scheduler
        self._limits = limits
        self._info = info or InfoSource(EtcdSettings(etcd.endpoint))

    @property
    def etcd_endpoint(self) -> str:
        return self._etcd.endpoint

    async def Apply(
        self, request: controller_pb2.ApplyRequest, context: Context
    ) -> controller_pb2.ApplyResponse:
        text = _decode(request.source, request.manifest)
        applied, revision = await store.apply(self._etcd, request.source or "manifest",
                                              text, dry_run=request.dry_run,
                                              limits=self._limits)
        if self._scheduler is not None and not request.dry_run:
            self._scheduler.wake()
        return controller_pb2.ApplyResponse(objects=_results(applied), revision=revision)

    async def Delete(
        self, request: controller_pb2.DeleteRequest, context: Context
    ) -> controller_pb2.DeleteResponse:
        if request.manifest:
            text = _decode(request.source, request.manifest)
            deleted = await store.delete_manifest(self._etcd, request.source or "manifest", text)
        elif request.kind and request.name:
            kind = store.canonical_kind(request.kind)
            deleted = await store.delete(self._etcd, [(kind, request.name)], must_exist=True)
        else:
            raise UserError("delete needs KIND and NAME, or a manifest")
        return controller_pb2.DeleteResponse(objects=_results(deleted))

    async def Get(
        self, request: controller_pb2.GetRequest, context: Context
    ) -> controller_pb2.GetResponse:
        return getters.get(await read_state(self._etcd), request.kind, request.name,
                           self._limits)

    async def Exec(
        self, request: common_pb2.ExecRequest, context: Context
    ) -> AsyncIterator[common_pb2.ExecOutput]:
        async for frame in proxy.exec_(self._etcd, request, self._dialer):
            yield frame

    async def Logs(
        self, request: common_pb2.LogsRequest, context: Context
    ) -> AsyncIterator[common_pb2.LogEntry]:
        async for frame in proxy.logs(self._etcd, request, self._dialer):
            yield frame

    async def ImageLoad(
        self, request_iterator: AsyncIterator[common_pb2.ImageChunk], context: Context,
    ) -> common_pb2.ImageLoadResponse:
        refs, digest = await self._images.load(request_iterator)
        return common_pb2.ImageLoadResponse(refs=refs, digest=str(digest))

    async def ImagePull(
        self, request: controller_pb2.ImagePullRequest, context: Context,
    ) -> AsyncIterator[common_pb2.ImageChunk]:
        path = await self._images.find(request.ref)
        async for chunk in read_chunks(path):
            yield chunk

    async def NetCheck(
        self, request: netcheck_pb2.NetCheckRequest, context: Context,
    ) -> netcheck_pb2.NetCheckResponse:
        return await netcheck.netcheck(await read_state(self._etcd), request.network,
                                       self._dialer)

    async def Info(
        self, request: controller_pb2.InfoRequest, context: Context,
    ) -> controller_pb2.InfoResponse:
        pems = list(context.auth_context().get("x509_pem_cert") or [])
        return await info.info(self._info, await read_state(self._etcd),
                               pems[0] if pems else None)


def _decode(source: str, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise UserError(f"{source or 'manifest'}: not UTF-8 text: {exc}") from exc


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: Any     # grpc_health.v1.health.aio.HealthServicer

    async def stop(self, grace: float | None = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    etcd: KeyValue, listen: str, state_dir: Path, scheduler: Scheduler | None = None,
    limits: Limits | None = None, tls: TlsSettings | None = None, *,
    max_archive: int = MAX_ARCHIVE_BYTES, info_source: InfoSource | None = None,
) -> RunningServer:
    """Bind ``listen`` (``HOST:0`` picks a free port) and start serving.

    ``limits`` default to the scheduler's, so Get explains pending containers as it does.
    ``tls``: serve mTLS, authorize every call by its certificate (berth.authz), and dial
    agents with the same identity; None serves plaintext (with a warning).
    """
    server = authz.make_server(tls, "berth-controller")
    if limits is None:
        limits = scheduler.limits if scheduler is not None else DEFAULT_LIMITS
    dialer = proxy.AgentDialer(tls)
    images = ImageStore(etcd, state_dir, max_archive=max_archive, dialer=dialer)
    service = ControllerService(etcd, images, scheduler, limits, dialer, info_source)
    controller_pb2_grpc.add_ControllerServicer_to_server(
        service, server)
    health_servicer = AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = authz.add_port(server, listen, tls)
    except RuntimeError as exc:
        raise UserError(f"cannot listen on {listen}: {exc}") from exc
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)
