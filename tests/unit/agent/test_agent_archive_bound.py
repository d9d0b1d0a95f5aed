"""The agent's ``max-image-archive-size``: its gRPC ImageLoad refuses a larger archive.

The agent service as berth-agent serves it (plaintext here), over a real local gRPC
channel, with a stand-in image store: the bound is checked while the archive streams in,
before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agent.server import AgentService
from berth import authz, grpcopts
from protos import agent_pb2_grpc, common_pb2

CHUNK = 512 << 10


class Images:
    def __init__(self) -> None:
        self.loaded: list[int] = []

    def load(self, path: Path) -> list[str]:
        self.loaded.append(path.stat().st_size)
        return ["busybox:latest"]


class Runtime:
    def __init__(self) -> None:
        self.images = Images()


def frames(count: int) -> Iterator[common_pb2.ImageChunk]:
    for _ in range(count):
        yield common_pb2.ImageChunk(data=b"x" * CHUNK)


async def test_an_archive_over_the_bound_is_refused_and_one_at_it_loads(tmp_path: Path) -> None:
    runtime = Runtime()
    server = authz.make_server(None, "berth-agent")
    agent_pb2_grpc.add_AgentServicer_to_server(
        AgentService(runtime, tmp_path, max_archive=1 << 20), server)  # type: ignore[arg-type]
    port = authz.add_port(server, "127.0.0.1:0", None)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                             options=grpcopts.channel_options()) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ImageLoad(frames(3))
            assert "larger than the limit of 1048576 bytes" in (info.value.details() or "")
            assert runtime.images.loaded == []
            done = await stub.ImageLoad(frames(2))
            assert list(done.refs) == ["busybox:latest"]
            assert runtime.images.loaded == [1 << 20]
    finally:
        await server.stop(None)
