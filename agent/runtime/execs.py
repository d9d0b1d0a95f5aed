"""A process run inside a running container with ``<runtime> exec`` (non-interactive).

containers.Runtime.exec starts one; the agent's gRPC servicer iterates its
output chunks and awaits its exit code. Design notes:

- Output is pumped from the pipes as soon as the process starts, so a caller
  that only awaits the exit code cannot deadlock it on a full pipe.
- The queue between the pumps and the reader is bounded (``QUEUE_CHUNKS`` chunks
  of at most ``CHUNK`` bytes): when a slow reader lets it fill, the pumps stop
  reading, the pipe fills and the command blocks in write(2). A caller that only
  awaits the exit code drains the queue itself (``wait``).
- runc exits 255 both when the command does and when runc itself could not
  start it. runc's own error goes to the ``--log`` file as JSON; only when that
  file has an error do we map the failure like Docker: not found -> 127,
  anything else (permission denied, not executable) -> 126.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

EXIT_NOT_FOUND = 127
EXIT_CANNOT_INVOKE = 126
_NOT_FOUND = ("executable file not found", "no such file or directory")

CHUNK = 64 * 1024
QUEUE_CHUNKS = 16        # per exec, at most ~1 MiB held between the pipes and the reader

Chunk = tuple[str, bytes]


def runtime_failure(log_path: Path) -> str:
    """runc's own error message for this exec, or "" if runc itself did not fail."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    errors: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            errors.append(str(entry.get("msg", "")))
    return "; ".join(errors)


def map_exit_code(returncode: int, failure: str) -> int:
    """Docker's exec exit codes: 127 not found, 126 cannot invoke, else the command's own."""
    if not failure:
        return returncode
    lowered = failure.lower()
    if any(s in lowered for s in _NOT_FOUND):
        return EXIT_NOT_FOUND
    return EXIT_CANNOT_INVOKE


class ExecProcess:
    """Async-iterate ``(stream, bytes)`` chunks; ``await proc`` (or ``wait()``) for the code."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, pid_path: Path) -> None:
        self._proc = proc
        self._log_path = log_path
        self._pid_path = pid_path
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._pumps = [
            asyncio.create_task(self._pump("stdout", proc.stdout)),
            asyncio.create_task(self._pump("stderr", proc.stderr)),
        ]
        self.error = ""           # runc's message when the command could not be started
        self._exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def _pump(self, stream: str, reader: asyncio.StreamReader | None) -> None:
        while reader is not None:
            data = await reader.read(CHUNK)
            if not data:
                break
            await self._queue.put((stream, data))  # blocks while the reader is behind

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        while True:
            if not self._queue.empty():
                yield self._queue.get_nowait()
                continue
            if all(pump.done() for pump in self._pumps):
                return  # nothing queued and nothing more will be
            getter = asyncio.ensure_future(self._queue.get())
            try:
                await asyncio.wait([getter, *self._pumps], return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()  # a cancelled get() takes no item off the queue
            if getter.done() and not getter.cancelled():
                yield getter.result()

    async def wait(self) -> int:
        """The exit code as Docker would report it (see map_exit_code)."""
        if self._exit_code is None:
            async for _ in self:
                pass  # output nobody asked for: drop it so the pumps can finish
            await asyncio.gather(*self._pumps)
            returncode = await self._proc.wait()
            self.error = runtime_failure(self._log_path) if returncode == 255 else ""
            self._exit_code = map_exit_code(returncode, self.error)
            self._remove_files()
        return self._exit_code

    async def close(self) -> None:
        """Kill and reap a process whose output nobody will read; remove runc's files.

        For a caller that went away before the exit code. The pumps are cancelled
        rather than drained: a background child of the command may hold the pipes.
        """
        if self._exit_code is not None:
            return
        started = self._pid_path.exists()
        self.kill(signal.SIGKILL)
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        returncode = await self._proc.wait()
        if not started:
            # runc may have started the command just after kill() found no pid file;
            # that kill went to runc, which then leaves the command in the container.
            self.kill(signal.SIGKILL)
        self._exit_code = returncode
        self._remove_files()

    def _remove_files(self) -> None:
        for path in (self._log_path, self._pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def __await__(self) -> Generator[Any, None, int]:
        return self.wait().__await__()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the command itself (runc exec cannot forward SIGKILL, so skip the middleman)."""
        try:
            pid = int(self._pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            pid = 0  # not started yet (or already reaped): runc will pass the signal on
        with contextlib.suppress(ProcessLookupError):
            if pid > 0 and self._exit_code is None:
                os.kill(pid, sig)
            elif self._proc.returncode is None:
                self._proc.send_signal(sig)
