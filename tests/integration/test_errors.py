"""Which part failed: clusterctl against a real controller and etcd, as a user runs it.

The controller runs in this process (start_server) on a real etcd; clusterctl runs as
a subprocess, so what is asserted is exactly what a person sees: one line on stderr
and the exit code the README lists. etcd is stopped by PID (EtcdServer.stop), the
controller address is a port nobody listens on, and the agent of a node is an address
that refuses connections.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.records import ContainerSpec, NodeRecord
from controller.server import RunningServer, start_server
from protos import controller_pb2, controller_pb2_grpc
from tests.integration.conftest import EtcdServer, free_port

pytestmark = pytest.mark.integration

CLUSTERCTL = str(Path(sys.executable).parent / "clusterctl")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def one_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr + self.stdout
        return lines[0]


async def clusterctl(controller: str, *args: str) -> Result:
    """Run clusterctl without blocking the loop that serves the in-process controller."""
    proc = await asyncio.create_subprocess_exec(
        CLUSTERCTL, "--controller", controller, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass(frozen=True)
class Controller:
    address: str
    etcd: Etcd3Client
    etcd_server: EtcdServer


@pytest.fixture
async def controller(etcd_server: EtcdServer, tmp_path: Path) -> AsyncIterator[Controller]:
    async with Etcd3Client(etcd_server.endpoint, timeout=2.0) as etcd:
        running: RunningServer = await start_server(etcd, "127.0.0.1:0", tmp_path)
        try:
            yield Controller(f"127.0.0.1:{running.port}", etcd, etcd_server)
        finally:
            await running.stop(grace=None)


GOOD = "apiVersion: berth/v1\nkind: Service\nmetadata: {name: web}\nspec: {image: busybox:latest}\n"


async def test_etcd_down_names_etcd_and_exits_5(controller: Controller, tmp_path: Path) -> None:
    assert (await clusterctl(controller.address, "get", "nodes")).code == 0
    manifest = tmp_path / "web.yaml"
    manifest.write_text(GOOD)
    controller.etcd_server.stop()
    for verb in (["get", "nodes"], ["apply", "-f", str(manifest)], ["delete", "service", "web"]):
        result = await clusterctl(controller.address, *verb)
        line = result.one_line()
        assert result.code == 5, (verb, result)
        assert line.startswith("Error: the controller cannot reach etcd at "
                               f"{controller.etcd_server.endpoint}: "), line
        assert "cannot reach the controller" not in line


async def test_controller_unreachable_exits_4() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = await clusterctl(address, "get", "nodes")
    assert result.code == 4, result
    assert result.one_line().startswith(f"Error: cannot reach the controller at {address}: ")


async def _assign_to_dead_agent(etcd: Etcd3Client) -> str:
    agent = f"127.0.0.1:{free_port()}"      # nothing listens there: connection refused
    await etcd.put(keyspace.node("host1"), NodeRecord(
        name="host1", address="192.0.2.10", agent_addr=agent).dumps())
    await etcd.put(keyspace.assign("host1", "web-1"), ContainerSpec(
        name="web-1", service="web", node="host1", image="busybox:latest").dumps())
    return agent


@pytest.mark.parametrize("verb", [["exec", "web-1", "--", "true"], ["logs", "web-1"]],
                         ids=["exec", "logs"])
async def test_agent_unreachable_exec_and_logs_exit_125_naming_the_agent(
    controller: Controller, verb: list[str]
) -> None:
    agent = await _assign_to_dead_agent(controller.etcd)
    result = await clusterctl(controller.address, *verb)
    line = result.one_line()
    assert result.code == 125, result
    assert line.startswith(f"Error: cannot reach the agent of node host1 at {agent}: "), line


async def test_not_found_exits_3_and_conflict_free_user_error_exits_1(
    controller: Controller, tmp_path: Path
) -> None:
    result = await clusterctl(controller.address, "get", "services", "nosuch")
    assert result.code == 3, result
    assert result.one_line() == 'Error: service "nosuch" not found'
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: berth/v1\nkind: Service\nmetadata: {name: x}\nspec: {}\n")
    result = await clusterctl(controller.address, "apply", "-f", str(bad))
    assert result.code == 1, result
    assert str(bad) in result.one_line()


def _huge_manifest(size: int) -> bytes:
    head = b"apiVersion: berth/v1\nkind: Service\nmetadata: {name: big}\n"
    return head + b"# " + b"x" * size + b"\nspec: {image: busybox:latest}\n"


async def test_oversized_request_is_refused_by_the_server(controller: Controller) -> None:
    # A client without berth's send limit: the controller itself must refuse.
    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(controller.address, options=options) as channel:
        stub = controller_pb2_grpc.ControllerStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Apply(controller_pb2.ApplyRequest(
                source="big.yaml", manifest=_huge_manifest(5 << 20)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ... and the controller still serves.
    assert (await clusterctl(controller.address, "get", "services")).code == 0


async def test_oversized_manifest_is_one_line_from_clusterctl(
    controller: Controller, tmp_path: Path
) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(_huge_manifest(5 << 20))
    result = await clusterctl(controller.address, "apply", "-f", str(big))
    # clusterctl refuses it before sending (the manifest limit is below the message limit).
    assert result.code == 1, result
    assert result.one_line() == (f"Error: {big}: manifest is {big.stat().st_size} bytes, more "
                                 "than the limit of 1048576 bytes (1 MiB); split it into "
                                 "several files"), result.stderr


async def test_image_load_to_an_unreachable_agent_exits_6(
    controller: Controller, tmp_path: Path
) -> None:
    from berth.busybox import build_busybox_image

    agent = await _assign_to_dead_agent(controller.etcd)
    archive = build_busybox_image(tmp_path / "busybox.tar")
    result = await clusterctl(controller.address, "image", "load", str(archive))
    assert result.code == 6, result
    assert f"node host1 at {agent}" in result.one_line() or (
        f"agent at {agent}" in result.one_line()), result.stderr
