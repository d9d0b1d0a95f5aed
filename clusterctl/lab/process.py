"""Starting, recognising and stopping the lab's daemons by PID.

Daemons run under ``nsenter --net=/run/netns/<ns>`` (not ``ip netns exec``, which
remounts /sys and hides the cgroup hierarchies runc needs), in their own session, with
stdout and stderr appended to a log file. ``posix_spawn`` rather than ``subprocess``:
the daemons outlive the ``clusterctl`` process, and an unreaped ``Popen`` object would
only warn about it. Before any signal the PID is checked against the recorded argv, so a
recycled PID is never killed. Called by ``daemons.py``, ``cleanup.py`` and ``lab.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from clusterctl.lab.errors import LabError

# Daemons reach only lab addresses; a proxy variable must not send gRPC or HTTP elsewhere.
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "grpc_proxy", "no_proxy"}
# PIDs this process spawned: only these may be reaped here. Reaping any other child
# would steal its exit status from whoever started it (a test's Popen, say).
_spawned: set[int] = set()
_PF_KTHREAD = 0x00200000


def daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(netns: str, argv: Sequence[str], log: Path) -> int:
    """Start ``argv`` inside ``netns``; return its PID (nsenter execs, so it is argv's PID)."""
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise LabError("nsenter not found: install util-linux")
    log.parent.mkdir(parents=True, exist_ok=True)
    full = [nsenter, f"--net=/run/netns/{netns}", *argv]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawn(nsenter, full, daemon_env(), file_actions=actions, setsid=True)
    except OSError as exc:
        raise LabError(f"cannot start {argv[0]} in {netns}: {exc}") from exc
    _spawned.add(pid)
    return pid


def _reap(pid: int) -> None:
    # Our own children turn into zombies when they exit; collect them so the PID frees up.
    if pid in _spawned:
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                _spawned.discard(pid)


def cmdline(pid: int) -> list[str] | None:
    """The command line of a live process; None when it is gone or a zombie."""
    for _ in range(50):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # Fields after the parenthesised comm (which may contain spaces): state is
        # field 3, flags field 9.
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] in ("Z", "X") or int(fields[6]) & _PF_KTHREAD:
            return None
        # While a process is inside execve (nsenter becoming etcd) its cmdline reads
        # empty for a moment. Ask again briefly.
        if raw:
            break
        time.sleep(0.002)
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def matches(cmd: Sequence[str], argv: Sequence[str]) -> bool:
    """Whether a running command line is ``argv``, allowing for an interpreter in front.

    A console script shows up as ``python /venv/bin/berth-agent --node h1 ...``, and right
    after spawn (before exec) as ``nsenter --net=... berth-agent ...``.
    """
    args = list(argv[1:])
    if len(cmd) < len(args) + 1:
        return False
    head = cmd[: len(cmd) - len(args)]
    tail = cmd[len(cmd) - len(args) :]
    program = os.path.basename(argv[0])
    return tail == args and any(os.path.basename(part) == program for part in head)


def is_ours(pid: int, argv: Sequence[str]) -> bool:
    _reap(pid)
    cmd = cmdline(pid)
    return cmd is not None and matches(cmd, argv)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def stop(procs: Mapping[int, Sequence[str]], grace: float = 10.0) -> list[int]:
    """SIGTERM the PIDs still running their argv, SIGKILL them after ``grace`` seconds.

    Returns the PIDs that still run afterwards (normally none).
    """
    live = {pid: argv for pid, argv in procs.items() if is_ours(pid, argv)}
    for pid in live:
        _signal(pid, signal.SIGTERM)
    live = await _wait_gone(live, grace)
    for pid in live:
        _signal(pid, signal.SIGKILL)
    return list(await _wait_gone(live, 5.0))


async def _wait_gone(
    procs: Mapping[int, Sequence[str]], within: float
) -> dict[int, Sequence[str]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    live = dict(procs)
    while live:
        live = {pid: argv for pid, argv in live.items() if is_ours(pid, argv)}
        if not live or loop.time() >= deadline:
            break
        await asyncio.sleep(0.1)
    return live


async def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL processes found inside the lab (its netns, cgroups); they are the lab's own."""
    targets = {pid: cmdline(pid) for pid in pids if pid != os.getpid()}
    live = {pid: cmd for pid, cmd in targets.items() if cmd is not None}
    for pid in live:
        _signal(pid, signal.SIGKILL)
    await _wait_gone(live, 5.0)


def tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])
