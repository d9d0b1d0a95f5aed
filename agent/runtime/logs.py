"""Reading container logs that conmon writes in the CRI ``k8s-file`` format.

Each line is ``<RFC3339Nano> <stdout|stderr> <F|P> <text>``; P marks a partial
line (conmon splits long lines and flushes unterminated output), continued by
the next entries of the same stream up to an F. containers.Runtime.logs calls
``read_logs``; the agent's gRPC servicer streams the entries it yields.

Design notes:

- Memory is bounded whatever the size of the files: whole reads stream line by
  line in batches, ``tail`` scans backwards in blocks keeping only line headers,
  and one entry is passed on in pieces of at most ``MAX_ENTRY`` bytes.
- The files are those logrotate.py keeps, oldest first. They are opened once, so a
  rotation during a read cannot shift them under the reader.
- ``tail`` counts entries, and entries of stdout and stderr may interleave their
  partial chunks. The backward scan therefore records, per stream, where the first
  shown entry begins; the forward pass drops that stream's lines before it.
- Following detects that conmon replaced ``ctr.log`` (another inode at the path),
  reads the old file to its end, then goes on with the files that came after it;
  a file truncated in place is read again from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.runtime.logrotate import LOG_NAME, ROTATION_LOCK, log_files, same_file

POLL_INTERVAL = 0.1
BLOCK = 64 * 1024            # backward scan read size
HEADER = 96                  # enough bytes for "<time> <stream> <tag> "
MAX_RAW_LINE = 64 * 1024     # conmon writes at most its 8 KiB buffer per line
MAX_ENTRY = 1024 * 1024      # a longer line is passed on in pieces of this size
BATCH_LINES = 1024           # raw lines parsed per trip to the reading thread

Pos = tuple[int, int]        # (index of the file in the reader's list, byte offset)


@dataclass(frozen=True)
class LogEntry:
    """One complete line a container wrote."""

    time: str      # RFC 3339 with nanoseconds, as conmon stamped the first chunk
    stream: str    # "stdout" or "stderr"
    line: str      # without the trailing newline


def _header(raw: bytes) -> tuple[str, str] | None:
    parts = raw[:HEADER].split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    return parts[1].decode("ascii", errors="replace"), parts[2].decode("ascii")


class _Assembler:
    """Joins partial (P) chunks per stream into whole lines."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, list[str], int]] = {}

    def feed(self, raw: str) -> LogEntry | None:
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            return None  # not ours (or corrupt); skip rather than fail the stream
        when, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) > 3 else ""
        first_time, chunks, size = self._pending.pop(stream, (when, [], 0))
        chunks.append(text)
        size += len(text)
        if tag == "P" and size < MAX_ENTRY:
            self._pending[stream] = (first_time, chunks, size)
            return None
        return LogEntry(first_time, stream, "".join(chunks))

    def flush(self) -> list[LogEntry]:
        """Partial lines left when the container is gone: emit them as they are."""
        out = [LogEntry(t, s, "".join(c)) for s, (t, c, _) in self._pending.items()]
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


def reverse_lines(f: BinaryIO, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, first HEADER bytes) of each line in ``f[:end]``, last line first."""
    if end <= 0:
        return
    f.seek(end - 1)
    hi = end - 1 if f.read(1) == b"\n" else end   # the last line's own newline
    pending = b""   # leading bytes of the line whose start is not read yet
    while hi > 0:
        lo = max(0, hi - BLOCK)
        f.seek(lo)
        block = f.read(hi - lo)
        j = len(block)
        while (k := block.rfind(b"\n", 0, j)) >= 0:
            yield lo + k + 1, (block[k + 1:j] + pending)[:HEADER]
            pending, j = b"", k
        pending = (block[:j] + pending)[:HEADER]
        hi = lo
    yield 0, pending


def _last_line_end(f: BinaryIO, size: int) -> int:
    """The offset just after the file's last newline (0 if none)."""
    hi = size
    while hi > 0:
        lo = max(0, hi - BLOCK)
        f.seek(lo)
        k = f.read(hi - lo).rfind(b"\n")
        if k >= 0:
            return lo + k + 1
        hi = lo
    return 0


@dataclass(frozen=True)
class _Cut:
    """Where the shown entries start: overall, and per stream (others start at ``default``)."""

    start: Pos
    first: dict[str, Pos]
    default: Pos


def find_tail(files: list[BinaryIO], ends: list[int], tail: int) -> _Cut:
    """Scan backwards for the start of the last ``tail`` entries (all if negative)."""
    end: Pos = (len(files) - 1, ends[-1]) if files else (0, 0)
    if tail < 0:
        return _Cut((0, 0), {}, (0, 0))
    if tail == 0:
        return _Cut(end, {}, end)
    count, open_, closed, first = 0, set[str](), set[str](), dict[str, Pos]()
    for index in range(len(files) - 1, -1, -1):
        for offset, head in reverse_lines(files[index], ends[index]):
            parsed = _header(head)
            if parsed is None:
                continue
            stream, tag = parsed
            if stream in open_:
                if tag == "P":   # an earlier chunk of a shown entry
                    first[stream] = (index, offset)
                    continue
                open_.discard(stream)   # this F ends the stream's previous entry
            elif stream in closed:
                continue
            if count < tail:
                count += 1
                open_.add(stream)
                first[stream] = (index, offset)
            else:
                closed.add(stream)
                if not open_:
                    return _Cut(min(first.values()), first, end)
    return _Cut(min(first.values()) if first else end, first, end)


class LogReader:
    """Blocking reader over one container's log files; run its methods in a thread."""

    def __init__(self, directory: Path, tail: int = -1, follow: bool = False) -> None:
        self.directory = directory
        self.follow = follow
        self._asm = _Assembler()
        self._files: list[BinaryIO | None] = []
        opened = self._open_after(None)
        ends = []
        for i, f in enumerate(opened):
            size = os.fstat(f.fileno()).st_size
            ends.append(_last_line_end(f, size) if i == len(opened) - 1 else size)
        self._files = list(opened)
        self._last_end = ends[-1] if ends else 0
        self._cut = find_tail(opened, ends, tail)
        self._index, self._offset = self._cut.start
        if self._files:
            self._seek()

    def _open_after(self, current: os.stat_result | None) -> list[BinaryIO]:
        """Open the log files newer than ``current`` (all of them if None), oldest first."""
        opened: list[BinaryIO] = []
        seen: set[tuple[int, int]] = set()
        found = current is None
        with ROTATION_LOCK:
            for path in log_files(self.directory):
                try:
                    f: BinaryIO = open(path, "rb")  # closed by _advance() or close()
                except FileNotFoundError:
                    continue
                st = os.fstat(f.fileno())
                if current is not None and same_file(st, current):
                    found = True
                    for older in opened:   # only what came after it is new
                        older.close()
                    opened = []
                    f.close()
                elif (st.st_dev, st.st_ino) in seen:
                    f.close()
                else:
                    seen.add((st.st_dev, st.st_ino))
                    opened.append(f)
        if not found:
            # The file we read left the set already: we cannot tell which files are
            # newer, so go on with the one conmon writes now.
            for stale in opened[:-1]:
                stale.close()
            opened = opened[-1:]
        return opened

    def _seek(self) -> None:
        f = self._files[self._index]
        if f is not None:
            f.seek(self._offset)

    def _keep(self, stream: str, pos: Pos) -> bool:
        return pos >= self._cut.first.get(stream, self._cut.default)

    def read_batch(self) -> tuple[list[LogEntry], bool]:
        """Entries from up to BATCH_LINES more lines, and whether more are ready now."""
        out: list[LogEntry] = []
        for _ in range(BATCH_LINES):
            raw = self._next_line()
            if raw is None:
                return out, False
            pos, data = raw
            parsed = _header(data)
            if parsed is None or not self._keep(parsed[0], pos):
                continue
            text = data[:-1] if data.endswith(b"\n") else data
            entry = self._asm.feed(text.decode("utf-8", errors="replace"))
            if entry is not None:
                out.append(entry)
        return out, True

    def _next_line(self) -> tuple[Pos, bytes] | None:
        if not self._files and self.follow:
            self._files = list(self._open_after(None))  # conmon had not made the log yet
        while self._index < len(self._files):
            f = self._files[self._index]
            assert f is not None  # only files before the current one are closed
            last = self._index == len(self._files) - 1
            if last and not self.follow and self._offset >= self._last_end:
                return None
            data = f.readline(MAX_RAW_LINE)
            complete = data.endswith(b"\n") or len(data) >= MAX_RAW_LINE
            if data and (complete or not last):
                pos = (self._index, self._offset)
                self._offset += len(data)
                return pos, data
            if data:
                f.seek(self._offset)  # a line still being written
            if not last:
                self._advance()
            elif not self.follow or not self._rotated(f):
                return None
        return None

    def _advance(self) -> None:
        f = self._files[self._index]
        if f is not None:
            f.close()
            self._files[self._index] = None
        self._index += 1
        self._offset = 0
        if self._index < len(self._files):
            self._seek()

    def _rotated(self, f: BinaryIO) -> bool:
        """At the end of the file conmon wrote: did it move on? Prepare to read on if so."""
        mine = os.fstat(f.fileno())
        try:
            current = os.stat(self.directory / LOG_NAME)
        except FileNotFoundError:
            return False  # between conmon's close and rename, or the container is gone
        if same_file(mine, current):
            if current.st_size < self._offset:   # truncated in place: start again
                self._offset = 0
                f.seek(0)
                return True
            return False
        newer = self._open_after(mine)
        if not newer:
            return False
        self._files.extend(newer)
        # Lines written before conmon closed the old file are read by the next call,
        # because the old file is no longer the last one.
        return True

    def flush(self) -> list[LogEntry]:
        return self._asm.flush()

    def close(self) -> None:
        for f in self._files:
            if f is not None:
                f.close()
        self._files = []


async def read_logs(directory: Path, *, tail: int = -1, follow: bool = False,
                    exited: Callable[[], bool] = lambda: True,
                    poll: float = POLL_INTERVAL) -> AsyncIterator[LogEntry]:
    """Yield the log's entries: the last ``tail`` (all if negative), then new ones if ``follow``.

    Following ends once ``exited()`` is true and the files have no more lines.
    """
    reader = await asyncio.to_thread(LogReader, directory, tail, follow)
    try:
        while True:
            done = exited()  # sample before reading so the last lines are never missed
            entries, more = await asyncio.to_thread(reader.read_batch)
            for entry in entries:
                yield entry
            if more or (follow and entries):
                continue
            if not follow or done:
                break
            await asyncio.sleep(poll)
        for entry in reader.flush():
            yield entry
    finally:
        with contextlib.suppress(Exception):
            reader.close()
