"""The agent's gRPC API (protos/agent.proto): exec, logs, inspect and image load.

The controller proxies clusterctl's exec and logs here. Served by agent.main on
the node's underlay address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import grpc

from berth.errors import NotFoundError, UserError
from protos import agent_pb2, agent_pb2_grpc, common_pb2

from agent.runtime.containers import Runtime

log = logging.getLogger(__name__)

# Docker's codes when the runtime itself fails before the command runs.
EXIT_BERTH_FAILED = 125


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, runtime: Runtime, scratch: Path) -> None:
        self._runtime = runtime
        self._scratch = scratch

    async def _require(self, name: str, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        names = {c.name for c in await self._runtime.list()}
        if name not in names:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"container {name!r} not found on this node")

    async def Exec(  # noqa: N802 - gRPC method name
        self, request: common_pb2.ExecRequest, context: grpc.aio.ServicerContext  # type: ignore[type-arg]
    ) -> AsyncIterator[common_pb2.ExecOutput]:
        await self._require(request.container, context)
        if not request.argv:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exec needs a command")
        try:
            proc = await self._runtime.exec(
                request.container, list(request.argv),
                env=dict(request.env) or None, workdir=request.workdir or None,
            )
        except (NotFoundError, UserError) as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        async for stream, data in proc:
            if stream == "stdout":
                yield common_pb2.ExecOutput(stdout=data)
            else:
                yield common_pb2.ExecOutput(stderr=data)
        yield common_pb2.ExecOutput(exit_code=await proc.wait())

    async def Logs(  # noqa: N802
        self, request: common_pb2.LogsRequest, context: grpc.aio.ServicerContext  # type: ignore[type-arg]
    ) -> AsyncIterator[common_pb2.LogEntry]:
        await self._require(request.container, context)
        tail = request.tail if request.HasField("tail") else -1
        async for entry in self._runtime.logs(request.container, tail=tail, follow=request.follow):
            line = entry.line if isinstance(entry.line, bytes) else entry.line.encode()
            yield common_pb2.LogEntry(time=entry.time, stream=entry.stream, line=line)

    async def Inspect(  # noqa: N802
        self, request: agent_pb2.InspectRequest, context: grpc.aio.ServicerContext  # type: ignore[type-arg]
    ) -> agent_pb2.InspectResponse:
        await self._require(request.container, context)
        container = await self._runtime.state(request.container)
        data = asdict(container)
        return agent_pb2.InspectResponse(json=json.dumps(data, default=str))

    async def ImageLoad(  # noqa: N802
        self,
        request_iterator: AsyncIterator[common_pb2.ImageChunk],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> common_pb2.ImageLoadResponse:
        self._scratch.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._scratch, suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request_iterator:
                    if chunk.WhichOneof("frame") == "data":
                        out.write(chunk.data)
            try:
                refs = await asyncio.to_thread(self._runtime.images.load, Path(tmp))
            except UserError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return common_pb2.ImageLoadResponse(refs=refs)
        finally:
            Path(tmp).unlink(missing_ok=True)
