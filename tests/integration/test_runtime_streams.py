"""Bounds on log files and output streams, with real runc and conmon (issue 6).

- A 30 s log flood stays within the rotation limit (Docker's 20 MB x 5 defaults), and
  ``logs --tail`` during and after it returns the last lines without this process
  (which runs the runtime, as the agent does) growing.
- A 500 MB exec read slowly through the controller's proxy and the agent's real gRPC
  servers (both in this process) keeps this process within 50 MB of its start.
- With a small limit, reading and following cross conmon's rotations exactly.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from agent.runtime import cgroups, rootfs
from agent.runtime.containers import Runtime
from agent.runtime.logrotate import (
    DEFAULT_LIMITS,
    LogLimits,
    disk_usage,
    log_files,
    rotated_name,
)
from agent.runtime.logs import LogEntry
from agent.server import AgentService
from berth import keyspace
from berth.busybox import build_busybox_image
from berth.etcd.model import KVMeta, Listing
from berth.records import ContainerSpec, NodeRecord
from controller.server import ControllerService
from protos import agent_pb2_grpc, controller_pb2_grpc

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def rss() -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("image") / "busybox.tar")


async def _runtime(tmp_path: Path, busybox_tar: Path,
                   limits: LogLimits) -> AsyncIterator[Runtime]:
    rt = Runtime(tmp_path / "state", tmp_path / "runc", f"berth-test-{uuid.uuid4().hex[:8]}",
                 log_limits=limits)
    rt.images.load(busybox_tar)
    try:
        yield rt
    finally:
        for c in await rt.list():
            await rt.delete(c.name)
        for path in sorted(rootfs.mountpoints(), reverse=True):
            if path.startswith(str(tmp_path)):
                await asyncio.to_thread(subprocess.run, ["umount", "-l", path], check=False)
        cgroups.remove_cgroup(rt.cgroup_parent)


@pytest.fixture
async def rt(tmp_path: Path, busybox_tar: Path) -> AsyncIterator[Runtime]:
    async for runtime in _runtime(tmp_path, busybox_tar, DEFAULT_LIMITS):
        yield runtime


SMALL = LogLimits(max_size=64 * 1024, max_files=20)


@pytest.fixture
async def small_rt(tmp_path: Path, busybox_tar: Path) -> AsyncIterator[Runtime]:
    async for runtime in _runtime(tmp_path, busybox_tar, SMALL):
        yield runtime


def spec(name: str, *command: str) -> ContainerSpec:
    return ContainerSpec(name=name, service="svc", node="n1", image="busybox", command=command)


async def tail(rt: Runtime, name: str, n: int) -> list[str]:
    return [e.line async for e in rt.logs(name, tail=n)]


# --- (a) flood ----------------------------------------------------------------------------

FLOOD_SECONDS = 30
PAYLOAD = "x" * 1000


async def test_log_flood_stays_within_rotation_limit_and_tail_keeps_memory_flat(
    rt: Runtime,
) -> None:
    # timeout kills yes mid-line: the first echo ends that line. The shell's
    # "Terminated" goes to /dev/null.
    script = (f"exec 2>/dev/null; timeout {FLOOD_SECONDS} yes {PAYLOAD}; echo; echo end-1;"
              " echo end-2; echo end-3; exec sleep 3600")
    await rt.create(spec("flood", "sh", "-c", script))
    await rt.start("flood")
    cdir = rt.containers_dir / "flood"
    rotator = asyncio.create_task(rt.rotate_logs_forever())
    limit = DEFAULT_LIMITS.max_size * DEFAULT_LIMITS.max_files
    peak_disk, growth = 0, 0
    try:
        await _wait_for(rt, "flood", lambda lines: len(lines) == 3)  # it has written
        start = rss()
        while "end-3" not in await tail(rt, "flood", 1):
            lines = await tail(rt, "flood", 3)
            growth = max(growth, rss() - start)
            # Lines are whole, or cut short: the newest (conmon has only read part of
            # it from the pipe yet) and the one yes was killed in.
            assert len(lines) == 3
            assert all(PAYLOAD.startswith(x) or x.startswith("end-") for x in lines), lines
            peak_disk = max(peak_disk, disk_usage(cdir))
            await asyncio.sleep(0.5)
        assert await tail(rt, "flood", 3) == ["end-1", "end-2", "end-3"]
        last4 = await tail(rt, "flood", 4)
        assert last4[1:] == ["end-1", "end-2", "end-3"] and PAYLOAD.startswith(last4[0])
        growth = max(growth, rss() - start)
    finally:
        rotator.cancel()
    await asyncio.to_thread(rt.rotate_logs)  # shift a file conmon may have just replaced
    print(f"flood: peak log disk {peak_disk / MB:.1f} MiB, RSS growth {growth / MB:.1f} MiB")
    # One file may be in flight: replaced by conmon, not yet shifted by the rotator.
    assert peak_disk <= limit + DEFAULT_LIMITS.max_size
    assert disk_usage(cdir) <= limit
    rotated = [rotated_name(i) for i in range(1, DEFAULT_LIMITS.max_files)]
    assert [p.name for p in log_files(cdir)] == [*reversed(rotated), "ctr.log"]
    assert growth < 30 * MB


# --- (b) slow exec reader -----------------------------------------------------------------

EXEC_BYTES = 500_000_000
SLOW_CLIENT = """
import sys, time, grpc
from protos import common_pb2, controller_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    stub = controller_pb2_grpc.ControllerStub(channel)
    request = common_pb2.ExecRequest(container="x", argv=["head", "-c", sys.argv[2], "/dev/zero"])
    total, code = 0, None
    for frame in stub.Exec(request):
        total += len(frame.stdout)
        if frame.HasField("exit_code"):
            code = frame.exit_code
        time.sleep(0.001)
print(total, code)
"""


class _OneAssignment:
    """The two etcd reads controller.proxy.locate makes: container "x" on node "n1"."""

    def __init__(self, agent_addr: str) -> None:
        self._spec = spec("x", "sleep", "3600")
        self._node = NodeRecord(name="n1", address="192.0.2.1", agent_addr=agent_addr)

    async def get_prefix(self, prefix: str) -> Listing:
        meta = KVMeta(keyspace.assign("n1", "x"), 1, 1, 1, 0)
        return Listing(items=((self._spec.dumps(), meta),), revision=1)

    async def get(self, key: str) -> tuple[bytes | None, KVMeta | None]:
        return self._node.dumps(), None


async def test_slow_exec_reader_keeps_agent_and_controller_memory_bounded(
    rt: Runtime, tmp_path: Path
) -> None:
    """A slow clusterctl reads 500 MB through the controller's proxy and the agent's API."""
    await rt.create(spec("x", "sleep", "3600"))
    await rt.start("x")
    agent, controller = grpc.aio.server(), grpc.aio.server()
    agent_addr = f"unix://{tmp_path}/agent.sock"
    controller_addr = f"unix://{tmp_path}/controller.sock"
    agent_pb2_grpc.add_AgentServicer_to_server(
        AgentService(rt, tmp_path / "scratch"), agent)
    service = ControllerService(_OneAssignment(agent_addr), None, None)  # type: ignore[arg-type]
    controller_pb2_grpc.add_ControllerServicer_to_server(
        service, controller)
    for server, address in ((agent, agent_addr), (controller, controller_addr)):
        server.add_insecure_port(address)
        await server.start()
    peak = start = rss()
    try:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SLOW_CLIENT, controller_addr, str(EXEC_BYTES),
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2],
        )
        done = asyncio.ensure_future(client.communicate())
        while not done.done():
            peak = max(peak, rss())
            await asyncio.wait([done], timeout=0.1)
        out, _ = done.result()
    finally:
        await controller.stop(grace=1)
        await agent.stop(grace=1)
    print(f"exec: RSS start {start / MB:.1f} MiB, peak {peak / MB:.1f} MiB")
    assert out.split() == [str(EXEC_BYTES).encode(), b"0"]
    assert peak - start < 50 * MB


# --- (c), (d) reading across real rotations -----------------------------------------------

BATCHES = 12
LINES = 40          # 40 lines of ~500 bytes: a batch is smaller than one file of SMALL


async def _wait_for(rt: Runtime, name: str, done: Callable[[list[str]], bool]) -> None:
    """Poll the last 3 lines until ``done`` accepts them."""
    while True:
        if done(await tail(rt, name, 3)):
            return
        await asyncio.sleep(0.05)


# The container writes one batch per go-file the test creates, so a rotation pass can
# run between batches: conmon replaces the file at most once in between.
WRITER = (f"for b in $(seq {BATCHES}); do while [ ! -e /tmp/go-$b ]; do sleep 0.02; done;"
          f" for i in $(seq {LINES}); do echo \"$b.$i $(printf %480s | tr ' ' y)\"; done;"
          " echo batch-$b; done")


async def _write_batches(rt: Runtime, batches: range) -> list[str]:
    """Have container "w" write ``batches``, with a rotation pass of ``rt`` after each."""
    expected: list[str] = []
    for b in batches:
        await _run(rt, "w", "touch", f"/tmp/go-{b}")
        marker = [f"batch-{b}"]
        await _wait_for(rt, "w", lambda lines: lines[-1:] == marker)  # noqa: B023 - awaited here
        await asyncio.to_thread(rt.rotate_logs)
        expected += [f"{b}.{i}" for i in range(1, LINES + 1)] + [f"batch-{b}"]
    return expected


async def test_tail_and_follow_cross_conmons_rotations(small_rt: Runtime) -> None:
    rt = small_rt
    await rt.create(spec("w", "sh", "-c", WRITER))
    await rt.start("w")
    follower = asyncio.ensure_future(_collect(rt.logs("w", follow=True)))
    expected = await _write_batches(rt, range(1, BATCHES + 1))
    await rt.wait("w", 30)
    followed = await follower
    cdir = rt.containers_dir / "w"
    assert len(log_files(cdir)) >= 3, "conmon should have replaced the file several times"
    everything = [e.line.split(" ")[0] async for e in rt.logs("w")]
    assert everything == expected
    assert [line.split(" ")[0] for line in followed] == expected
    current = [e for e in (cdir / "ctr.log").read_text().splitlines() if e]
    n = len(current) + 2 * LINES   # more than the current file holds
    assert [line.split(" ")[0] for line in await tail(rt, "w", n)] == expected[-n:]


@pytest.fixture
async def unlimited_rt(tmp_path: Path, busybox_tar: Path) -> AsyncIterator[Runtime]:
    """A runtime whose conmon limit never triggers, as with an agent older than rotation."""
    async for runtime in _runtime(tmp_path, busybox_tar, LogLimits(max_size=1 << 40)):
        yield runtime


async def test_restarted_agent_rotates_adopted_containers_and_asks_conmon_to_reopen(
    unlimited_rt: Runtime,
) -> None:
    old = unlimited_rt
    await old.create(spec("w", "sh", "-c", WRITER))
    await old.start("w")
    expected = await _write_batches(old, range(1, 3))
    cdir = old.containers_dir / "w"
    assert [p.name for p in log_files(cdir)] == ["ctr.log"]
    # The agent restarts with the small limit: the adopted container's conmon never
    # replaces the file itself, so the passes ask it to over its control fifo.
    new = Runtime(old.state_dir, old.runtime_root, old.cgroup_parent, log_limits=SMALL)
    expected += await _write_batches(new, range(3, BATCHES + 1))
    await new.wait("w", 30)
    await asyncio.to_thread(new.rotate_logs)
    assert len(log_files(cdir)) >= 3, "conmon should have reopened its log several times"
    assert [e.line.split(" ")[0] async for e in new.logs("w")] == expected


async def _collect(entries: AsyncIterator[LogEntry]) -> list[str]:
    return [e.line async for e in entries]


async def _run(rt: Runtime, name: str, *argv: str) -> None:
    proc = await rt.exec(name, list(argv))
    assert await proc == 0
