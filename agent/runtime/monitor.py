"""The per-container monitor: conmon, which owns the container's stdio, log and exit code.

containers.Runtime calls ``Monitor.create`` to have conmon run ``<runtime> create``
and reads exit codes with ``Monitor.exit_code``. Design notes:

- conmon double-forks, so the agent is not its parent and may die or restart
  while containers keep running and logging; a new session keeps the agent's
  terminal signals away from it.
- We learn that ``create`` finished (and the container's pid, or runc's error)
  from conmon's sync pipe (``_OCI_SYNCPIPE``), as Podman does, instead of polling.
- ``--runtime-arg=--root=...`` gives each simulated host its own runtime state
  root; the ``=`` form keeps GOption from reading ``--root`` as conmon's own flag.
- ``--log-size-max`` bounds the log file even while no agent runs; logrotate.py
  turns conmon's truncation into rotation.
- The exit code lands in ``exits/<id>`` when the container's init exits (137
  after SIGKILL); then conmon exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.runtime.errors import OCIRuntimeError
from agent.runtime.logrotate import DEFAULT_MAX_SIZE, LOG_NAME

CREATE_TIMEOUT = 60.0


@dataclass(frozen=True)
class MonitorPaths:
    """Files conmon writes for one container, all inside the container dir."""

    container_dir: Path

    @property
    def log(self) -> Path:
        return self.container_dir / LOG_NAME

    @property
    def pidfile(self) -> Path:
        return self.container_dir / "ctr.pid"

    @property
    def conmon_pidfile(self) -> Path:
        return self.container_dir / "conmon.pid"

    @property
    def exit_dir(self) -> Path:
        return self.container_dir / "exits"

    @property
    def socket_dir(self) -> Path:
        return self.container_dir / "socks"

    @property
    def stderr(self) -> Path:
        return self.container_dir / "conmon.err"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return None  # half-written: the caller will look again


class Monitor:
    """Runs conmon for containers that use one OCI runtime binary and state root."""

    def __init__(self, runtime_bin: str, runtime_root: Path, conmon_bin: str = "conmon",
                 log_size_max: int = DEFAULT_MAX_SIZE) -> None:
        self.runtime_path = shutil.which(runtime_bin) or runtime_bin
        self.runtime_root = runtime_root
        self.conmon_bin = conmon_bin
        self.log_size_max = log_size_max

    def argv(self, cid: str, bundle: Path, paths: MonitorPaths) -> list[str]:
        return [
            self.conmon_bin, "--api-version", "1",
            "-c", cid, "-u", cid, "-n", cid,
            "-r", self.runtime_path, f"--runtime-arg=--root={self.runtime_root}",
            "-b", str(bundle),
            "-p", str(paths.pidfile), "-P", str(paths.conmon_pidfile),
            "-l", f"k8s-file:{paths.log}", "--log-size-max", str(self.log_size_max),
            "--exit-dir", str(paths.exit_dir), "--socket-dir-path", str(paths.socket_dir),
            "--log-level", "error",
        ]

    async def create(self, cid: str, bundle: Path, paths: MonitorPaths) -> int:
        """Have conmon create the container; return its init pid once it is ``created``."""
        for d in (paths.exit_dir, paths.socket_dir):
            d.mkdir(exist_ok=True)
        read_fd, write_fd = os.pipe()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            try:
                err = os.open(paths.stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *self.argv(cid, bundle, paths),
                        stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err,
                        pass_fds=(write_fd,), start_new_session=True,
                        env={**os.environ, "_OCI_SYNCPIPE": str(write_fd)},
                    )
                finally:
                    os.close(err)
            finally:
                os.close(write_fd)  # else EOF never comes if conmon dies early
            await proc.wait()  # the first fork returns at once; the monitor lives on
            async with asyncio.timeout(CREATE_TIMEOUT):
                raw = await reader.readline()
        except TimeoutError as exc:
            raise OCIRuntimeError(
                f"{cid}: conmon did not report create within {CREATE_TIMEOUT:.0f}s"
            ) from exc
        finally:
            transport.close()
        return self._parse_sync(cid, raw, paths)

    def _parse_sync(self, cid: str, raw: bytes, paths: MonitorPaths) -> int:
        try:
            msg = json.loads(raw.splitlines()[0]) if raw.strip() else {}
        except ValueError:
            msg = {}
        pid = int(msg.get("data", -1)) if isinstance(msg, dict) else -1
        if pid <= 0:
            detail = str(msg.get("message", "")) if isinstance(msg, dict) else ""
            try:
                detail = detail or paths.stderr.read_text(errors="replace")
            except FileNotFoundError:
                pass
            raise OCIRuntimeError(f"{cid}: {self.runtime_path} create failed", stderr=detail)
        return pid

    @staticmethod
    def exit_code(paths: MonitorPaths, cid: str) -> int | None:
        """The container's exit code, once conmon has written it."""
        return _read_int(paths.exit_dir / cid)

    @staticmethod
    def conmon_pid(paths: MonitorPaths) -> int | None:
        return _read_int(paths.conmon_pidfile)

