"""The node's container runtime: create/start/kill/stop/delete/exec/logs over runc + conmon.

The agent constructs one ``Runtime`` per (simulated) host and drives it from its
reconcile loop and gRPC servicer. Design notes:

- Status is derived from kernel facts on every call (``state``/``list``): the
  init pid with its recorded start time, the runtime's own state while a
  container may be between create and start, and conmon's exit file. The state
  file only remembers what the kernel cannot tell. This is what makes
  live-restore work: a new Runtime on the same state dir adopts containers that
  kept running under conmon, and sees the exit codes of those that stopped.
- ``create`` undoes its partial work on any failure (AsyncExitStack); ``delete``
  is idempotent and converges from any half-done state.
- Every verb takes a per-container lock; reads take none.

Per container, ``<state_dir>/containers/<name>/`` is the OCI bundle (config.json,
rootfs/) and holds the overlay upper/work dirs, hosts/hostname/resolv.conf, the
conmon log (rotated by logrotate.py), pid and exit files, and state.json. A container
with ``network_mode: container:X`` bind-mounts X's hosts/hostname/resolv.conf instead
and runs in X's netns (netmode.py); create refuses it (JoinTargetNotRunning, a
PendingError) while X is not running here.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import signal as signals
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from agent.runtime import cgroups, logrotate, rootfs
from agent.runtime.bundle import ContainerFiles, build_config, write_bundle, write_container_files
from agent.runtime.errors import (
    ContainerExists,
    ContainerNotFound,
    JoinTargetNotRunning,
    OCIRuntimeError,
    SpecError,
)
from agent.runtime.execs import ExecProcess
from agent.runtime.images import ImageStore
from agent.runtime.layerstore import ensure_private_dir
from agent.runtime.logs import LogEntry, read_logs
from agent.runtime.monitor import Monitor, MonitorPaths
from agent.runtime.netmode import InitId, JoinedNetns, Sandbox, parse_network_mode
from agent.runtime.process import wait_pid
from agent.runtime.state import (
    Facts,
    Record,
    Verb,
    check_verb,
    commit,
    derive,
    needs_runc_state,
    now_rfc3339,
    parse_runc_state,
    pid_alive,
    proc_start_time,
    read_record,
    rfc3339,
)
from berth.lifecycle import ContainerState
from berth.records import ContainerSpec, is_plain_name

MAX_NAME = 128      # runc ids and conmon's socket paths stay short
EXIT_FILE_GRACE = 2.0


@dataclass
class _NamedLock:
    """One container's lock and how many callers hold or await it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass(frozen=True)
class Container:
    """A container as the kernel and its monitor report it right now."""

    name: str
    state: ContainerState
    pid: int                  # init pid while created/running, else 0
    exit_code: int | None
    started_at: str           # RFC 3339 UTC, "" if never started
    finished_at: str
    error: str
    bundle: Path
    files: ContainerFiles     # hosts, hostname, resolv.conf: rewrite in place
    netns: str | None         # /proc/<pid>/ns/net while the init process lives
    spec: ContainerSpec
    image_id: str
    init: InitId | None = None          # the live init (pid, start time); None once it exited
    joined: JoinedNetns | None = None   # network_mode container:X: X's init it joined


class Runtime:
    """All containers of one node, under ``state_dir``, run by one OCI runtime."""

    def __init__(self, state_dir: Path, runtime_root: Path, cgroup_parent: str,
                 runtime_bin: str = "runc", conmon_bin: str = "conmon",
                 log_limits: logrotate.LogLimits = logrotate.DEFAULT_LIMITS) -> None:
        self.state_dir = state_dir
        self.containers_dir = state_dir / "containers"
        ensure_private_dir(state_dir)   # root-only: container roots and image layers below
        ensure_private_dir(self.containers_dir)
        self.runtime_root = runtime_root
        self.cgroup_parent = cgroup_parent
        self.log_limits = log_limits
        self.monitor = Monitor(runtime_bin, runtime_root, conmon_bin, log_limits.max_size)
        self.images = ImageStore(state_dir / "images")
        self._locks: dict[str, _NamedLock] = {}

    # --- helpers ------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if not is_plain_name(name) or len(name) > MAX_NAME:
            raise SpecError(f"invalid container name {name!r}")
        return self.containers_dir / name

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        """Hold ``name``'s lock; forget it only when nobody holds or awaits it.

        Dropping a lock that a caller still awaits would let the next caller take a
        fresh one and run beside that waiter, so the entry is counted, not popped.
        """
        entry = self._locks.setdefault(name, _NamedLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[name]

    def cgroup_path(self, name: str) -> str:
        return "/" + "/".join(p for p in (self.cgroup_parent.strip("/"), name) if p)

    async def _runtime(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            self.monitor.runtime_path, "--root", str(self.runtime_root), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        rc = proc.returncode or 0
        if check and rc != 0:
            raise OCIRuntimeError(f"{Path(self.monitor.runtime_path).name} {args[0]} failed",
                                  stderr=err.decode(errors="replace"), returncode=rc)
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    # --- create / start -----------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> Container:
        """Mount, write the bundle, and have conmon create it; return it ``created``."""
        cdir = self._dir(spec.name)
        async with self._lock(spec.name):
            if read_record(cdir) is not None:
                raise ContainerExists(f"container {spec.name} already exists")
            image = self.images.resolve(spec.image)
            sandbox, shared, joined = self._sandbox(spec)
            if (self.runtime_root / spec.name).exists():
                # Leftover of a state dir wiped under a live runtime root; it is ours.
                await self._runtime("delete", "--force", spec.name, check=False)
            async with AsyncExitStack() as undo:
                cdir.mkdir(parents=True, exist_ok=True)
                undo.callback(shutil.rmtree, cdir, ignore_errors=True)
                record = Record(spec=spec, image_id=image.id,
                                runtime=self.monitor.runtime_path, created_at=now_rfc3339())
                if joined is not None:
                    record = record.with_(joined=joined.container, joined_pid=joined.init.pid,
                                          joined_start=joined.init.start)
                commit(cdir, record, None, ContainerState.CREATED)
                undo.push_async_callback(asyncio.to_thread, cgroups.remove_cgroup,
                                         self.cgroup_path(spec.name))
                undo.push_async_callback(asyncio.to_thread, rootfs.remove_rootfs, cdir)
                root = await asyncio.to_thread(rootfs.mount_rootfs, cdir, image.layers)
                files = write_container_files(cdir, sandbox.hostname)
                write_bundle(cdir, build_config(spec, image, root, shared or files,
                                                self.cgroup_parent, sandbox))
                undo.push_async_callback(self._runtime, "delete", "--force", spec.name,
                                         check=False)
                paths = MonitorPaths(cdir)
                pid = await self.monitor.create(spec.name, cdir, paths)
                conmon_pid = self.monitor.conmon_pid(paths) or 0
                commit(cdir, record.with_(
                    pid=pid, pid_start=proc_start_time(pid) or 0, conmon_pid=conmon_pid,
                    conmon_start=proc_start_time(conmon_pid) or 0 if conmon_pid else 0,
                ), ContainerState.CREATED, ContainerState.CREATED)
                undo.pop_all()
        return await self.state(spec.name)

    def _sandbox(self, spec: ContainerSpec) -> tuple[Sandbox, ContainerFiles | None,
                                                      JoinedNetns | None]:
        """The netns and hostname ``spec``'s network mode asks for; for ``container:X``
        also X's /etc files (shared, as Docker does) and X's init, which it joins."""
        mode = parse_network_mode(spec)
        if mode.kind == "host":
            return Sandbox("host", spec.node or spec.name), None, None
        if mode.kind != "container":
            return Sandbox("new", spec.name), None, None
        tdir = self._dir(mode.target)
        target = read_record(tdir)
        if (target is None or not target.started_at
                or not pid_alive(target.pid, target.pid_start)):
            raise JoinTargetNotRunning(
                f"network_mode container:{mode.target}: waiting for container "
                f"{mode.target} to run on this node")
        try:
            hostname = (tdir / "hostname").read_text().strip() or mode.target
        except OSError:
            hostname = mode.target
        sandbox = Sandbox("path", hostname, f"/proc/{target.pid}/ns/net")
        joined = JoinedNetns(mode.target, InitId(target.pid, target.pid_start))
        return sandbox, _files(tdir), joined

    async def start(self, name: str) -> Container:
        async with self._lock(name):
            current = await self.state(name)
            check_verb(Verb.START, current.state, name)
            await self._runtime("start", name)
            record = self._record(name)
            commit(self._dir(name), record.with_(started_at=now_rfc3339()), current.state,
                   ContainerState.RUNNING)
        return await self.state(name)

    # --- signals --------------------------------------------------------------------------

    async def kill(self, name: str, signal: int = signals.SIGTERM) -> None:
        async with self._lock(name):
            current = await self.state(name)
            check_verb(Verb.KILL, current.state, name)
            await self._runtime("kill", name, str(int(signal)))

    async def wait(self, name: str, timeout: float | None = None) -> Container:  # noqa: ASYNC109
        """Return once the container has exited and its exit code is recorded."""
        record = self._record(name)
        if record.pid and not await wait_pid(record.pid, record.pid_start, timeout):
            raise TimeoutError(f"container {name} still running after {timeout}s")
        return await self.state(name)

    async def stop(self, name: str, timeout: float = 10.0) -> Container:  # noqa: ASYNC109
        """SIGTERM, then SIGKILL after ``timeout`` seconds, as ``docker stop`` does."""
        current = await self.state(name)
        check_verb(Verb.STOP, current.state, name)
        if current.state is ContainerState.EXITED:
            return current
        await self.kill(name, signals.SIGTERM)
        try:
            return await self.wait(name, timeout)
        except TimeoutError:
            pass
        try:
            await self.kill(name, signals.SIGKILL)
        except OCIRuntimeError:
            pass  # it exited between the timeout and the kill
        return await self.wait(name, 30.0)

    # --- delete -----------------------------------------------------------------------------

    async def delete(self, name: str) -> None:
        """Kill if needed, remove runtime state, mount, cgroups and files. Idempotent."""
        cdir = self._dir(name)
        async with self._lock(name):
            record = read_record(cdir)
            if record is None and not cdir.exists():
                return
            if record is not None and pid_alive(record.pid, record.pid_start):
                await self._runtime("kill", name, "KILL", check=False)
                await wait_pid(record.pid, record.pid_start, 10.0)
            # The init is dead, so runc's cleanup, conmon's exit and our unmount are
            # independent: overlap them (this is most of delete's latency).
            # `runc delete --force` also kills an init left "created" by a crash inside
            # create (record pid 0), which is what lets that container's conmon leave.
            await asyncio.gather(
                self._runtime("delete", "--force", name, check=False),
                self._reap_monitor(*_monitor_of(cdir, record)),
                asyncio.to_thread(rootfs.remove_rootfs, cdir),
            )
            await asyncio.to_thread(cgroups.remove_cgroup, self.cgroup_path(name))
            await asyncio.to_thread(logrotate.remove_logs, cdir)
            await asyncio.to_thread(shutil.rmtree, cdir, True)

    @staticmethod
    async def _reap_monitor(pid: int, start: int) -> None:
        """Let conmon write the exit file and leave before its directory goes."""
        if pid and not await wait_pid(pid, start, 5.0):
            _signal_pid(pid, start, signals.SIGKILL)

    # --- queries ----------------------------------------------------------------------------

    def _record(self, name: str) -> Record:
        record = read_record(self._dir(name))
        if record is None:
            raise ContainerNotFound(f"no such container: {name}")
        return record

    async def state(self, name: str) -> Container:
        """The container's state, derived from kernel facts now (state.derive)."""
        cdir = self._dir(name)
        record = self._record(name)
        facts = await self._facts(name, record)
        derived = derive(record, facts)
        finished = ""
        if derived.exit_code is not None:
            exit_file = MonitorPaths(cdir).exit_dir / name
            finished = rfc3339(datetime.fromtimestamp(exit_file.stat().st_mtime, UTC))
        alive = facts.init_alive
        joined = None
        if record.joined:
            joined = JoinedNetns(record.joined, InitId(record.joined_pid, record.joined_start))
        return Container(
            name=name, state=derived.state, pid=record.pid if alive else 0,
            exit_code=derived.exit_code, started_at=record.started_at, finished_at=finished,
            error=derived.error, bundle=cdir, files=_files(cdir),
            netns=f"/proc/{record.pid}/ns/net" if alive else None,
            spec=record.spec, image_id=record.image_id,
            init=InitId(record.pid, record.pid_start) if alive else None, joined=joined,
        )

    async def _facts(self, name: str, record: Record) -> Facts:
        """Ask the kernel, runc and conmon only what ``derive`` needs for this record."""
        alive = bool(record.pid) and pid_alive(record.pid, record.pid_start)
        if alive:
            # runc keeps exec.fifo until start opens it: "created", without spawning runc.
            facts = Facts(init_alive=True,
                          exec_fifo=(self.runtime_root / name / "exec.fifo").exists())
            if needs_runc_state(record, facts):
                rc, out, _ = await self._runtime("state", name, check=False)
                facts = replace(facts, runc_status=parse_runc_state(out) if rc == 0 else None)
            return facts
        if not record.pid:
            return Facts(init_alive=False)
        return await self._exit_facts(name, record)

    async def _exit_facts(self, name: str, record: Record) -> Facts:
        """conmon's exit file, waiting briefly while conmon is still writing it."""
        paths = MonitorPaths(self._dir(name))
        deadline = asyncio.get_running_loop().time() + EXIT_FILE_GRACE
        while True:
            code = self.monitor.exit_code(paths, name)
            monitor_alive = pid_alive(record.conmon_pid, record.conmon_start)
            if code is not None or not monitor_alive:
                # It may have written, then left.
                code = code if code is not None else self.monitor.exit_code(paths, name)
                return Facts(init_alive=False, exit_code=code, monitor_alive=monitor_alive)
            if asyncio.get_running_loop().time() > deadline:
                return Facts(init_alive=False, monitor_alive=True)
            await asyncio.sleep(0.01)

    async def list(self) -> builtins.list[Container]:
        found: list[Container] = []
        for cdir in sorted(self.containers_dir.iterdir()):
            try:
                found.append(await self.state(cdir.name))
            except (ContainerNotFound, SpecError):
                continue  # half-created or half-deleted; delete() cleans such dirs
        return found

    # --- exec and logs ----------------------------------------------------------------------

    async def exec(self, name: str, argv: builtins.list[str], env: dict[str, str] | None = None,
                   workdir: str | None = None) -> ExecProcess:
        """Run ``argv`` in the running container; iterate its output, await its exit code."""
        current = await self.state(name)
        check_verb(Verb.EXEC, current.state, name)
        token = uuid.uuid4().hex[:12]
        log_path = current.bundle / f"exec-{token}.log"
        pid_path = current.bundle / f"exec-{token}.pid"
        args = [self.monitor.runtime_path, "--root", str(self.runtime_root),
                "--log", str(log_path), "--log-format", "json", "exec", "--pid-file", str(pid_path)]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        if workdir:
            args += ["--cwd", workdir]
        proc = await asyncio.create_subprocess_exec(
            *args, name, *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return ExecProcess(proc, log_path, pid_path)

    def rotate_logs(self) -> None:
        """One rotation pass over every container's log (blocking: run it in a thread).

        It goes by directory, not by record, so containers adopted after a restart and
        half-created ones are covered too.
        """
        try:
            dirs = list(self.containers_dir.iterdir())
        except FileNotFoundError:
            return
        for cdir in dirs:
            logrotate.rotate(cdir, self.log_limits)

    async def rotate_logs_forever(self, interval: float = logrotate.ROTATE_INTERVAL) -> None:
        while True:
            await asyncio.to_thread(self.rotate_logs)
            await asyncio.sleep(interval)

    async def logs(self, name: str, tail: int = -1,
                   follow: bool = False) -> AsyncIterator[LogEntry]:
        record = self._record(name)
        async for entry in read_logs(
            self._dir(name), tail=tail, follow=follow,
            exited=lambda: not pid_alive(record.pid, record.pid_start),
        ):
            yield entry


def _files(cdir: Path) -> ContainerFiles:
    return ContainerFiles(cdir / "hosts", cdir / "hostname", cdir / "resolv.conf")


def _monitor_of(cdir: Path, record: Record | None) -> tuple[int, int]:
    """conmon's pid and start time for the container in ``cdir``; (0, 0) if none.

    After a crash inside create the record has no conmon pid yet, but conmon may
    have written its pid file: trust that pid only while its argv names this
    bundle, so a reused pid is never signalled.
    """
    if record is not None and record.conmon_pid:
        return record.conmon_pid, record.conmon_start
    pid = Monitor.conmon_pid(MonitorPaths(cdir)) or 0
    start = proc_start_time(pid) if pid > 0 else None
    if start is None:
        return 0, 0
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    if os.fsencode(str(cdir)) not in argv or proc_start_time(pid) != start:
        return 0, 0
    return pid, start


def _signal_pid(pid: int, start: int, sig: int) -> None:
    """Signal ``pid`` only if it is still the process we recorded."""
    if pid_alive(pid, start):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
