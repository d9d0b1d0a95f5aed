"""Integration tests of agent.runtime.Runtime: real runc, conmon, overlayfs and cgroups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from agent.runtime import cgroups, rootfs
from agent.runtime.containers import Runtime
from agent.runtime.errors import (
    ContainerNotFound,
    ImageNotFound,
    InvalidTransition,
    OCIRuntimeError,
)
from agent.runtime.state import _write as write_record  # simulates a crash's leftovers
from agent.runtime.state import pid_alive, read_record
from agent.server import AgentService
from berth.busybox import build_busybox_image
from berth.lifecycle import ContainerState as State
from berth.records import ContainerSpec
from protos import common_pb2

pytestmark = pytest.mark.integration

DOCKER_CAPS = "00000000a80425fb"


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("image") / "busybox.tar")


def spec(name: str, *command: str, **kw: object) -> ContainerSpec:
    return ContainerSpec(name=name, service="svc", node="n1", image="busybox",
                         command=command or None, **kw)


def exists(path: str) -> bool:
    return os.path.exists(path)


async def _cleanup(rt: Runtime, tmp_path: Path) -> None:
    for c in await rt.list():
        await rt.delete(c.name)
    for path in sorted(rootfs.mountpoints(), reverse=True):
        if path.startswith(str(tmp_path)):
            # Last resort so one failure does not leak mounts; the test has failed already.
            await asyncio.to_thread(subprocess.run, ["umount", "-l", path], check=False)
    cgroups.remove_cgroup(rt.cgroup_parent)


@pytest.fixture
async def rt(tmp_path: Path, busybox_tar: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(tmp_path / "state", tmp_path / "runc", f"berth-test-{uuid.uuid4().hex[:8]}")
    runtime.images.load(busybox_tar)
    try:
        yield runtime
    finally:
        await _cleanup(runtime, tmp_path)


async def run_exec(rt: Runtime, name: str, *argv: str) -> tuple[int, str, str]:
    proc = await rt.exec(name, list(argv))
    out, err = b"", b""
    async for stream, chunk in proc:
        if stream == "stdout":
            out += chunk
        else:
            err += chunk
    return await proc, out.decode(), err.decode()


async def running(rt: Runtime, name: str, *command: str) -> None:
    await rt.create(spec(name, *command))
    await rt.start(name)


async def test_create_start_gives_running_container_with_docker_hardening(rt: Runtime) -> None:
    created = await rt.create(spec("web-1", "sleep", "3600"))
    assert created.state is State.CREATED and created.pid > 0
    started = await rt.start("web-1")
    assert started.state is State.RUNNING
    assert started.pid == created.pid
    assert started.netns == f"/proc/{started.pid}/ns/net" and exists(started.netns)
    assert started.started_at.endswith("Z")

    assert (await run_exec(rt, "web-1", "cat", "/proc/1/cmdline"))[1] == "sleep\x003600\x00"
    _, status, _ = await run_exec(rt, "web-1", "cat", "/proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == DOCKER_CAPS
    assert fields["CapBnd"].strip() == DOCKER_CAPS
    assert fields["CapAmb"].strip() == "0000000000000000"
    assert fields["Seccomp"].strip() == "2"
    assert (await run_exec(rt, "web-1", "hostname"))[1].strip() == "web-1"
    await _assert_masked_paths(rt, "web-1")
    code, _, err = await run_exec(rt, "web-1", "sh", "-c", "echo 1 > /proc/sys/kernel/panic")
    assert code != 0 and "Read-only" in err
    hosts = started.files.hosts.read_text()
    assert "127.0.0.1\tlocalhost" in hosts and "web-1" in hosts
    assert "web-1" in (await run_exec(rt, "web-1", "cat", "/etc/hosts"))[1]


async def _assert_masked_paths(rt: Runtime, name: str) -> None:
    """Masked paths are /dev/null bind mounts (char 1:3); absent host paths stay absent."""
    async def char_dev(path: str) -> tuple[int, str]:
        code, out, _ = await run_exec(rt, name, "stat", "-c", "%F %t:%T", path)
        return code, out.strip()

    if exists("/proc/kcore"):
        assert await char_dev("/proc/kcore") == (0, "character special file 1:3")
    else:
        assert (await run_exec(rt, name, "test", "-e", "/proc/kcore"))[0] == 1
    on_host = [p for p in ("/proc/keys", "/proc/timer_list") if exists(p)]
    assert on_host, "the host has neither /proc/keys nor /proc/timer_list to check masking with"
    for path in on_host:
        assert await char_dev(path) == (0, "character special file 1:3"), path


def _host_allows_userns_without_caps() -> tuple[bool, str]:
    """Whether ``unshare -U`` works on the host with every capability dropped."""
    if not os.path.exists("/usr/bin/setpriv"):
        return False, "setpriv (util-linux) is not installed"
    proc = subprocess.run(
        ["/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all",
         "/bin/busybox", "unshare", "-U", "true"],
        capture_output=True, text=True, check=False,
    )
    return proc.returncode == 0, proc.stderr.strip()


async def test_seccomp_profile_blocks_what_capabilities_allow(rt: Runtime) -> None:
    # User namespaces need no capability, so only the seccomp profile can refuse them.
    allowed, why = _host_allows_userns_without_caps()
    if not allowed:
        pytest.skip(f"the host forbids unshare -U without capabilities: {why}")
    await running(rt, "sc", "sleep", "3600")
    code, _, err = await run_exec(rt, "sc", "unshare", "-U", "true")
    assert code != 0 and "Operation not permitted" in err


async def test_containers_do_not_see_each_others_processes(rt: Runtime) -> None:
    await running(rt, "a", "sleep", "3601")
    await running(rt, "b", "sleep", "3602")
    _, ps_a, _ = await run_exec(rt, "a", "ps", "-o", "args")
    assert "sleep 3601" in ps_a and "sleep 3602" not in ps_a
    _, ps_b, _ = await run_exec(rt, "b", "ps", "-o", "args")
    assert "sleep 3602" in ps_b and "sleep 3601" not in ps_b


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["sh", "-c", "exit 7"], 7), (["nosuch-cmd"], 127), (["/etc/passwd"], 126), (["/etc"], 126)],
    ids=["command-exit-code", "not-found-127", "not-executable-126", "directory-126"],
)
async def test_exec_exit_codes_match_docker(rt: Runtime, argv: list[str], code: int) -> None:
    await running(rt, "x", "sleep", "3600")
    assert (await run_exec(rt, "x", *argv))[0] == code


async def test_exec_streams_stdout_and_stderr_with_env_and_workdir(rt: Runtime) -> None:
    await running(rt, "x", "sleep", "3600")
    proc = await rt.exec("x", ["sh", "-c", "echo $GREETING; pwd; echo oops >&2"],
                         env={"GREETING": "hello"}, workdir="/tmp")
    chunks = [c async for c in proc]
    assert await proc == 0
    out = b"".join(d for s, d in chunks if s == "stdout").decode()
    assert out == "hello\n/tmp\n"
    assert b"".join(d for s, d in chunks if s == "stderr") == b"oops\n"


async def test_exec_in_exited_container_is_refused(rt: Runtime) -> None:
    await running(rt, "x", "true")
    await rt.wait("x", 10)
    with pytest.raises(InvalidTransition):
        await rt.exec("x", ["true"])


async def test_logs_are_timestamped_lines_with_streams_tail_and_follow(rt: Runtime) -> None:
    script = "echo one; sleep 0.1; echo two >&2; sleep 0.3; echo three"
    await running(rt, "echo", "sh", "-c", script)
    followed = [e async for e in rt.logs("echo", follow=True)]
    assert [(e.stream, e.line) for e in followed] == [
        ("stdout", "one"), ("stderr", "two"), ("stdout", "three")
    ]
    assert all(e.time[:4].isdigit() and "T" in e.time for e in followed)
    exited = await rt.wait("echo", 10)
    assert (exited.state, exited.exit_code) == (State.EXITED, 0)
    assert [e.line async for e in rt.logs("echo", tail=1)] == ["three"]
    assert len([e async for e in rt.logs("echo")]) == 3


async def test_stop_kills_after_timeout_when_term_is_ignored(rt: Runtime) -> None:
    # PID 1 without a TERM handler ignores SIGTERM, so stop must escalate to SIGKILL.
    await running(rt, "stubborn", "sleep", "3600")
    stopped = await rt.stop("stubborn", timeout=0.5)
    assert (stopped.state, stopped.exit_code) == (State.EXITED, 137)
    assert stopped.finished_at.endswith("Z")
    assert (await rt.stop("stubborn", timeout=0.5)).exit_code == 137  # no-op on exited


async def test_exit_code_of_command(rt: Runtime) -> None:
    await running(rt, "x", "sh", "-c", "exit 3")
    assert (await rt.wait("x", 10)).exit_code == 3


async def test_new_runtime_adopts_running_containers_and_sees_exits(rt: Runtime) -> None:
    await running(rt, "keep", "sleep", "3600")
    await running(rt, "dies", "sleep", "3600")
    before = {c.name: c for c in await rt.list()}
    # The agent is gone; one container is killed behind its back.
    os.kill(before["dies"].pid, signal.SIGKILL)
    fresh = Runtime(rt.state_dir, rt.runtime_root, rt.cgroup_parent)
    after = {c.name: c for c in await fresh.list()}
    assert after["keep"].state is State.RUNNING
    assert after["keep"].pid == before["keep"].pid
    assert after["keep"].started_at == before["keep"].started_at
    dead = await fresh.wait("dies", 10)
    assert (dead.state, dead.exit_code) == (State.EXITED, 137)
    assert (await run_exec(fresh, "keep", "true"))[0] == 0


async def test_delete_leaves_no_mount_cgroup_or_bundle_and_is_idempotent(rt: Runtime) -> None:
    c = await rt.create(spec("gone", "sleep", "3600"))
    await rt.start("gone")
    cgroup = rt.cgroup_path("gone")
    assert cgroups.cgroup_dirs(cgroup), "runc should have made the container's cgroups"
    await rt.delete("gone")
    assert str(c.bundle / "rootfs") not in rootfs.mountpoints()
    assert cgroups.cgroup_dirs(cgroup) == []
    assert not c.bundle.exists()
    assert not (rt.runtime_root / "gone").exists()
    assert not exists(f"/proc/{c.pid}")
    await rt.delete("gone")
    with pytest.raises(ContainerNotFound):
        await rt.state("gone")


async def test_failed_create_undoes_everything(rt: Runtime) -> None:
    with pytest.raises(ImageNotFound):
        await rt.create(ContainerSpec(name="nope", service="s", node="n", image="nosuch:1"))
    # runc refuses a working directory that is a file, after the mount and bundle exist.
    with pytest.raises(OCIRuntimeError):
        await rt.create(spec("bad", "true", workdir="/etc/passwd"))
    assert not (rt.containers_dir / "bad").exists()
    assert not [m for m in rootfs.mountpoints() if m.startswith(str(rt.state_dir))]
    assert cgroups.cgroup_dirs(rt.cgroup_path("bad")) == []
    assert await rt.list() == []


async def test_concurrent_creates(rt: Runtime) -> None:
    names = [f"c{i}" for i in range(4)]
    await asyncio.gather(*(running(rt, n, "sleep", "3600") for n in names))
    assert {c.name: c.state for c in await rt.list()} == dict.fromkeys(names, State.RUNNING)


async def test_delete_cleans_up_after_an_agent_crash_inside_create(rt: Runtime) -> None:
    # The crash window: conmon has run `runc create`, but the agent died before it
    # recorded the pids, so state.json still says pid 0 (as written before the mount).
    made = await rt.create(spec("half", "sleep", "3600"))
    record = read_record(made.bundle)
    assert record is not None and record.conmon_pid > 0
    conmon = record.conmon_pid
    write_record(made.bundle, replace(record, pid=0, pid_start=0, conmon_pid=0, conmon_start=0))
    fresh = Runtime(rt.state_dir, rt.runtime_root, rt.cgroup_parent)

    seen = await fresh.state("half")
    assert (seen.state, seen.started_at, seen.pid) == (State.EXITED, "", 0)
    assert "create did not complete" in seen.error
    assert (rt.runtime_root / "half").exists(), "runc should still hold the created container"

    await fresh.delete("half")
    assert not (rt.runtime_root / "half").exists()
    assert not exists(f"/proc/{made.pid}")
    # conmon's parent is pid 1, which may not have reaped it yet: a zombie counts as gone.
    assert not pid_alive(conmon, record.conmon_start), "conmon of the half-made container lives"
    assert str(made.bundle / "rootfs") not in rootfs.mountpoints()
    assert cgroups.cgroup_dirs(rt.cgroup_path("half")) == []
    assert not made.bundle.exists()
    with pytest.raises(ContainerNotFound):
        await fresh.state("half")


async def test_delete_does_not_let_a_new_caller_past_a_waiting_one(rt: Runtime) -> None:
    # A create waits on the lock while a delete holds it; a delete that arrives after
    # the first delete finished must wait for that create, not run beside it.
    await running(rt, "x", "sleep", "3600")
    first = asyncio.create_task(rt.delete("x"))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(rt.create(spec("x", "sleep", "3600")))
    await first
    late = asyncio.create_task(rt.delete("x"))
    made, _ = await asyncio.gather(waiting, late, return_exceptions=True)
    assert not isinstance(made, BaseException), made
    assert made.state is State.CREATED
    assert await rt.list() == []
    assert not (rt.runtime_root / "x").exists()
    assert not [m for m in rootfs.mountpoints() if m.startswith(str(rt.state_dir))]


class _Context:
    """The part of grpc.aio.ServicerContext that AgentService.Exec uses."""

    async def abort(self, code: object, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


@pytest.mark.parametrize("how", ["cancelled", "closed"])
async def test_exec_rpc_kills_the_command_when_the_client_goes_away(
    rt: Runtime, tmp_path: Path, how: str
) -> None:
    await running(rt, "x", "sleep", "3600")
    service = AgentService(rt, tmp_path / "scratch")
    request = common_pb2.ExecRequest(container="x", argv=["sh", "-c", "echo ready; sleep 3601"])
    # The servicer method is an async generator; grpc closes it when the call ends.
    stream = cast(AsyncGenerator[common_pb2.ExecOutput, None],
                  service.Exec(request, _Context()))  # type: ignore[arg-type]
    assert (await anext(stream)).stdout == b"ready\n"
    assert "sleep 3601" in (await run_exec(rt, "x", "ps", "-o", "args"))[1]
    if how == "closed":
        await stream.aclose()
    else:
        # grpc cancels the handler's task while it waits for the next chunk.
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
    assert "sleep 3601" not in (await run_exec(rt, "x", "ps", "-o", "args"))[1]
    assert sorted(p.name for p in (rt.containers_dir / "x").glob("exec-*")) == []
