"""Integration tests of agent.runtime.Runtime: real runc, conmon, overlayfs and cgroups."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.runtime import cgroups, rootfs
from agent.runtime.containers import Runtime
from agent.runtime.errors import (
    ContainerNotFound,
    ImageNotFound,
    InvalidTransition,
    OCIRuntimeError,
)
from agent.runtime.state import State
from berth.busybox import build_busybox_image
from berth.records import ContainerSpec

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
    # Masked paths are /dev/null bind mounts (char 1:3); kcore may not exist on this kernel.
    code, out, _ = await run_exec(rt, "web-1", "stat", "-c", "%t:%T", "/proc/timer_list")
    assert (code, out.strip()) == (0, "1:3")
    assert (await run_exec(rt, "web-1", "sh", "-c", "cat /proc/kcore 2>/dev/null | wc -c"))[1] \
        .strip() == "0"
    # Read-only /proc/sys, and seccomp returns EPERM for a blocked syscall (unshare).
    code, _, err = await run_exec(rt, "web-1", "sh", "-c", "echo 1 > /proc/sys/kernel/panic")
    assert code != 0 and "Read-only" in err
    code, _, err = await run_exec(rt, "web-1", "unshare", "-u", "true")
    assert code != 0 and "not permitted" in err
    hosts = started.files.hosts.read_text()
    assert "127.0.0.1\tlocalhost" in hosts and "web-1" in hosts
    assert "web-1" in (await run_exec(rt, "web-1", "cat", "/etc/hosts"))[1]


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
