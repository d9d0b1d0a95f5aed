"""Reading container logs that conmon writes in the CRI ``k8s-file`` format.

Each line is ``<RFC3339Nano> <stdout|stderr> <F|P> <text>``; P marks a partial
line (conmon splits long lines and flushes unterminated output), continued by
the next entries of the same stream up to an F. containers.Runtime.logs calls
``read_logs``; the agent's gRPC servicer streams the entries it yields.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class LogEntry:
    """One complete line a container wrote."""

    time: str      # RFC 3339 with nanoseconds, as conmon stamped the first chunk
    stream: str    # "stdout" or "stderr"
    line: str      # without the trailing newline


class _Assembler:
    """Joins partial (P) chunks per stream into whole lines."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, list[str]]] = {}

    def feed(self, raw: str) -> LogEntry | None:
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            return None  # not ours (or corrupt); skip rather than fail the stream
        when, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) > 3 else ""
        first_time, chunks = self._pending.pop(stream, (when, []))
        chunks.append(text)
        if tag == "P":
            self._pending[stream] = (first_time, chunks)
            return None
        return LogEntry(first_time, stream, "".join(chunks))

    def flush(self) -> list[LogEntry]:
        """Partial lines left when the container is gone: emit them as they are."""
        out = [LogEntry(t, s, "".join(c)) for s, (t, c) in self._pending.items()]
        self._pending.clear()
        return sorted(out, key=lambda e: e.time)


def parse(lines: Iterable[str]) -> Iterator[LogEntry]:
    """Parse complete k8s-file lines (without newlines) into entries, partials joined."""
    asm = _Assembler()
    for raw in lines:
        entry = asm.feed(raw)
        if entry is not None:
            yield entry
    yield from asm.flush()


class _Tailer:
    """Reads whole lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []  # an unterminated line is still being written
        self.offset += end + 1
        return data[:end].decode("utf-8", errors="replace").split("\n")


async def read_logs(path: Path, *, tail: int = -1, follow: bool = False,
                    exited: Callable[[], bool] = lambda: True,
                    poll: float = POLL_INTERVAL) -> AsyncIterator[LogEntry]:
    """Yield the log's entries: the last ``tail`` (all if negative), then new ones if ``follow``.

    Following ends once ``exited()`` is true and the file has no more lines.
    """
    tailer = _Tailer(path)
    asm = _Assembler()
    backlog: deque[LogEntry] = deque(maxlen=tail if tail >= 0 else None)
    for raw in await asyncio.to_thread(tailer.read_lines):
        entry = asm.feed(raw)
        if entry is not None:
            backlog.append(entry)
    if not follow:
        # A partial line with nothing after it is all the container will ever write there.
        backlog.extend(asm.flush())
    for entry in backlog:
        yield entry
    while follow:
        done = exited()  # sample before reading so the last lines are never missed
        lines = await asyncio.to_thread(tailer.read_lines)
        for raw in lines:
            entry = asm.feed(raw)
            if entry is not None:
                yield entry
        if done and not lines:
            break
        if not lines:
            await asyncio.sleep(poll)
    for entry in asm.flush():
        yield entry
