"""Cluster-wide image loads against a real etcd, a real controller and real agent servicers.

Issue 6, finding 4: an image that an agent refused stayed registered in etcd, and the
error read "Unexpected <class '...ImageFormatError'>: ...". A load is now all or nothing
across the nodes Ready when it starts, and errors are one plain line. Also finding 2
through the controller's real ImagePull RPC.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.runtime.containers import Runtime
from agent.server import AgentService
from berth import keyspace
from berth.busybox import build_busybox_image
from berth.etcd import Etcd3Client
from berth.records import NodeRecord
from controller.server import RunningServer, start_server
from protos import agent_pb2_grpc, common_pb2, controller_pb2, controller_pb2_grpc
from tests.imagecraft import config_for, docker_files, tar_bytes, write

pytestmark = pytest.mark.integration
RUNNING = "docker.io/library/busybox:latest"


class RefusingAgent(agent_pb2_grpc.AgentServicer):
    """An agent whose disk is full: it refuses every load after reading it."""

    async def ImageLoad(self, request_iterator: Any, context: Any) -> Any:
        async for _ in request_iterator:
            pass
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no space left on device")


@asynccontextmanager
async def _serve(servicer: Any) -> AsyncIterator[str]:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


AgentFactory = Callable[[str], AbstractAsyncContextManager[tuple[Runtime, str]]]


@pytest.fixture
def real_agent(tmp_path: Path) -> AgentFactory:
    @asynccontextmanager
    async def start(name: str) -> AsyncIterator[tuple[Runtime, str]]:
        runtime = Runtime(tmp_path / name / "state", tmp_path / name / "runc",
                          f"berth-test-{uuid.uuid4().hex[:8]}")
        async with _serve(AgentService(runtime, tmp_path / name / "state" / "tmp")) as addr:
            yield runtime, addr
    return start


class Controller:
    def __init__(self, etcd: Etcd3Client, stub: Any, state: Path) -> None:
        self.etcd, self.stub, self.state = etcd, stub, state

    async def add_node(self, name: str, agent_addr: str) -> None:
        record = NodeRecord(name=name, address="192.0.2.10", agent_addr=agent_addr)
        await self.etcd.put(keyspace.node(name), record.dumps())

    async def load(self, archive: bytes) -> Any:
        async def frames() -> AsyncIterator[common_pb2.ImageChunk]:
            yield common_pb2.ImageChunk(filename="img.tar")
            for start in range(0, len(archive), 1 << 16):
                yield common_pb2.ImageChunk(data=archive[start:start + (1 << 16)])
        return await self.stub.ImageLoad(frames())

    async def load_error(self, archive: bytes) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.load(archive)
        return info.value

    async def images(self) -> list[str]:
        listing = await self.etcd.get_prefix(keyspace.IMAGES)
        return [meta.key for _, meta in listing.items]

    def archives(self) -> list[str]:
        return sorted(p.name for p in (self.state / "images").iterdir())


@pytest.fixture
async def controller(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Controller]:
    await etcd.delete_prefix(keyspace.ROOT)
    running: RunningServer = await start_server(etcd, "127.0.0.1:0", tmp_path / "controller")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = controller_pb2_grpc.ControllerStub(channel)
            yield Controller(etcd, stub, tmp_path / "controller")
    finally:
        await running.stop(grace=None)
        await etcd.delete_prefix(keyspace.ROOT)


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_busybox_image(tmp_path_factory.mktemp("img") / "busybox.tar").read_bytes()


def _hostile_archive(tmp_path: Path) -> bytes:
    layer = tar_bytes({"hello": b"hi"})
    config = config_for([layer], diff_ids=["sha256:" + "/tmp/x/././".ljust(64, "/")])
    return write(tmp_path / "evil.tar", docker_files([layer], "evil:1", config)).read_bytes()


async def test_finding_4_refused_image_is_not_recorded_and_error_is_plain(
    controller: Controller, real_agent: AgentFactory, tmp_path: Path
) -> None:
    async with real_agent("host1") as (runtime, addr):
        await controller.add_node("host1", addr)
        err = await controller.load_error(_hostile_archive(tmp_path))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = err.details() or ""
        assert details.startswith("image load: node host1 rejected the image: config of "
                                  "manifest.json[0]: rootfs.diff_ids[0]: invalid digest")
        assert "\n" not in details and "<class" not in details and "Error" not in details
        assert await controller.images() == []
        assert controller.archives() == []
        assert runtime.images.list() == []


async def test_load_is_rolled_back_when_a_ready_node_refuses(
    controller: Controller, real_agent: AgentFactory, busybox: bytes
) -> None:
    async with real_agent("host1") as (runtime, addr), _serve(RefusingAgent()) as bad:
        await controller.add_node("host1", addr)
        await controller.add_node("host2", bad)
        err = await controller.load_error(busybox)
        assert (err.code(), err.details()) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "image load: node host2 rejected the image: no space left on device; "
            "the image was not loaded on any node")
        assert await controller.images() == [] and controller.archives() == []
        assert not runtime.images.has("busybox"), "host1 kept an image the cluster refused"


async def test_load_is_rolled_back_when_a_ready_node_is_unreachable(
    controller: Controller, real_agent: AgentFactory, busybox: bytes
) -> None:
    async with real_agent("host1") as (one, addr1), real_agent("host2") as (two, addr2):
        await controller.add_node("host1", addr1)
        await controller.add_node("host2", addr2)
        first = await controller.load(busybox)       # an earlier good load stays good
        assert list(first.refs) == ["busybox:latest"]
        await controller.add_node("host3", "127.0.0.1:1")
        retagged = busybox + b"\0" * 1024            # same image, another archive digest
        err = await controller.load_error(retagged)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert (err.details() or "").startswith("image load: node host3: agent at 127.0.0.1:1 "
                                                "is unreachable")
        assert (err.details() or "").endswith("; the image was not loaded on any node")
        assert await controller.images() == ["/berth/images/busybox:latest"]
        assert controller.archives() == [f"{first.digest[7:]}.tar"]
        # Rolled back by untagging: the nodes fetch the recorded archive again on demand.
        assert not one.images.has("busybox") and not two.images.has("busybox")
        pulled = [c async for c in controller.stub.ImagePull(
            controller_pb2.ImagePullRequest(ref="busybox"))]
        assert b"".join(c.data for c in pulled) == busybox


async def test_every_ready_node_gets_the_image_then_it_is_recorded(
    controller: Controller, real_agent: AgentFactory, busybox: bytes
) -> None:
    async with real_agent("host1") as (one, addr1), real_agent("host2") as (two, addr2):
        await controller.add_node("host1", addr1)
        await controller.add_node("host2", addr2)
        resp = await controller.load(busybox)
        assert list(resp.refs) == ["busybox:latest"]
        assert await controller.images() == ["/berth/images/busybox:latest"]
        assert one.images.list() == two.images.list() == [RUNNING]
        assert (controller.state / "images").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("ref", ["sha256:../../secret", "sha256:" + "/tmp/x".ljust(64, "/")],
                         ids=["traversal", "absolute"])
async def test_finding_2_image_pull_cannot_read_host_tars(
    controller: Controller, tmp_path: Path, ref: str
) -> None:
    (controller.state / "images").mkdir(parents=True, exist_ok=True)
    (tmp_path / "secret.tar").write_bytes(b"host secret")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in controller.stub.ImagePull(controller_pb2.ImagePullRequest(ref=ref)):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("image pull: ref: invalid digest")
