"""The agent's gRPC API (protos/agent.proto): exec, logs, inspect, image load and remove,
and the network facts netcheck asks for (agent.netdiag).

The controller proxies clusterctl's exec and logs here. Served by agent.main on
the node's underlay address.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import grpc

from agent.imagestream import load_stream
from agent.netdiag import NetView, diagnose
from agent.runtime.containers import Runtime
from agent.runtime.errors import (
    ContainerNotFound,
    ImageNotFound,
    InvalidReference,
)
from berth.errors import NotFoundError, PermanentError, UserError
from berth.imagelimits import MAX_ARCHIVE_BYTES
from berth.rpcerrors import maps_errors
from protos import agent_pb2, agent_pb2_grpc, common_pb2, netcheck_pb2

log = logging.getLogger(__name__)


@maps_errors("agent")
class AgentService(agent_pb2_grpc.AgentServicer):
    """Each RPC raises berth errors; maps_errors gives them berth's one status table."""

    def __init__(self, runtime: Runtime, scratch: Path, network: NetView | None = None,
                 *, max_archive: int = MAX_ARCHIVE_BYTES) -> None:
        self._runtime = runtime
        self._scratch = scratch
        self._network = network
        self._max_archive = max_archive

    async def _require(self, name: str) -> None:
        # One container's state, not every container's: exec and logs are hot paths.
        try:
            await self._runtime.state(name)
        except ContainerNotFound as exc:
            raise NotFoundError(f"container {name!r} not found on this node") from exc

    async def Exec(
        self,
        request: common_pb2.ExecRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[common_pb2.ExecOutput]:
        await self._require(request.container)
        if not request.argv:
            raise UserError("exec needs a command")
        proc = await self._runtime.exec(
            request.container,
            list(request.argv),
            env=dict(request.env) or None,
            workdir=request.workdir or None,
        )
        try:
            async for stream, data in proc:
                if stream == "stdout":
                    yield common_pb2.ExecOutput(stdout=data)
                else:
                    yield common_pb2.ExecOutput(stderr=data)
            code = await proc.wait()
        finally:
            # The client went away (cancelled, or the stream was closed) before the exit
            # code: nobody will read this process, so kill and reap it. Shielded, so a
            # second cancellation cannot leave it half-reaped.
            await asyncio.shield(asyncio.ensure_future(proc.close()))
        yield common_pb2.ExecOutput(exit_code=code)

    async def Logs(
        self,
        request: common_pb2.LogsRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[common_pb2.LogEntry]:
        await self._require(request.container)
        tail = request.tail if request.HasField("tail") else -1
        async for entry in self._runtime.logs(request.container, tail=tail, follow=request.follow):
            line = entry.line if isinstance(entry.line, bytes) else entry.line.encode()
            yield common_pb2.LogEntry(time=entry.time, stream=entry.stream, line=line)

    async def Inspect(
        self,
        request: agent_pb2.InspectRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> agent_pb2.InspectResponse:
        await self._require(request.container)
        container = await self._runtime.state(request.container)
        data = asdict(container)
        return agent_pb2.InspectResponse(json=json.dumps(data, default=str))

    async def ImageLoad(
        self,
        request_iterator: AsyncIterator[common_pb2.ImageChunk],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> common_pb2.ImageLoadResponse:
        try:
            refs = await load_stream(self._runtime.images, request_iterator, self._scratch,
                                     self._max_archive)
        except OSError as exc:
            # The node's disk, not the archive: say so in one line (ENOSPC, EIO...).
            log.warning("image load failed: %s", exc)
            raise PermanentError(f"image load: {exc.strerror or 'I/O error'} on this node") from exc
        return common_pb2.ImageLoadResponse(refs=refs)

    async def ImageRemove(
        self,
        request: agent_pb2.ImageRemoveRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> agent_pb2.ImageRemoveResponse:
        removed = []
        for ref in request.refs:
            try:
                await asyncio.to_thread(self._runtime.images.remove, ref)
            except (ImageNotFound, InvalidReference):
                continue
            removed.append(ref)
        return agent_pb2.ImageRemoveResponse(removed=removed)

    async def NetDiag(
        self,
        request: netcheck_pb2.NetDiagRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> netcheck_pb2.NetDiagResponse:
        if self._network is None:
            raise PermanentError("this agent runs no container networking")
        return await diagnose(self._network, request)
