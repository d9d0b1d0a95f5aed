"""Rotation of the k8s-file logs conmon writes: ``ctr.log``, then ``ctr.log.1`` ... ``.N-1``.

containers.Runtime passes ``LogLimits.max_size`` to conmon (via monitor.Monitor) and
calls ``rotate`` for every container on each pass of ``Runtime.rotate_logs_forever``,
which agent.main runs. logs.py reads the set of files with ``log_files``.

Design notes (behaviour checked against Debian's conmon 2.1.6):

- ``--log-size-max N`` makes conmon "truncate": before a write that would take its
  byte counter over N it creates ``ctr.log.tmp`` and renames it over ``ctr.log``, so
  the old contents are unlinked. The counter counts bytes since conmon's own last
  truncation. A reopen asked for over the ``ctl`` fifo in the bundle ("2 0 0\\n") also
  replaces the file but does not reset that counter, so a plain rename-then-reopen
  rotation would make conmon cut the next file short, and that file would be lost.
- So the agent keeps a hard link, ``ctr.log.hold``, to the file conmon writes. When
  conmon replaces ``ctr.log`` (at exactly N bytes: Docker's max-size), the old inode
  survives under the hold link and the next pass shifts it to ``ctr.log.1``, dropping
  the oldest file. Nothing is lost while passes run faster than conmon fills a file.
- While the agent is down ``--log-size-max`` still bounds the file: conmon keeps
  truncating, and what was held when the agent stopped survives.
- A conmon started without the limit (by an older agent) never replaces the file on
  its own; a pass asks it to over ``ctl`` once the file is over the limit, which ends
  in the same replacement.
- All renames happen under ``ROTATION_LOCK`` so a reader in this process lists and
  opens a consistent set of files (conmon's own replacement is one atomic rename).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

LOG_NAME = "ctr.log"
HOLD_NAME = "ctr.log.hold"
CONTROL_FIFO = "ctl"
REOPEN_LOGS = b"2 0 0\n"   # conmon's control message: type 2 (reopen logs), no window size

# Docker's `local` log driver defaults: 20 MB per file, 5 files. The deployment
# issue makes these configurable; everything reads them from here.
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILES = 5
ROTATE_INTERVAL = 0.2      # seconds; a flood of more than max_size per pass loses files

ROTATION_LOCK = threading.Lock()


@dataclass(frozen=True)
class LogLimits:
    """How large one log file may grow and how many files (current included) are kept."""

    max_size: int = DEFAULT_MAX_SIZE
    max_files: int = DEFAULT_MAX_FILES

    def __post_init__(self) -> None:
        if self.max_size < 4096:
            raise ValueError(f"log max size must be at least 4096 bytes, got {self.max_size}")
        if self.max_files < 1:
            raise ValueError(f"log max files must be at least 1, got {self.max_files}")


DEFAULT_LIMITS = LogLimits()


def rotated_name(index: int) -> str:
    return f"{LOG_NAME}.{index}"


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def log_files(directory: Path) -> list[Path]:
    """The container's log files that exist, oldest first, the one conmon writes last.

    The hold link is listed only while it names an older file than ``ctr.log`` (conmon
    replaced the file and no pass has shifted it yet).
    """
    numbered: list[tuple[int, Path]] = []
    prefix = LOG_NAME + "."
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            suffix = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
            if suffix.isdigit() and suffix == str(int(suffix)):
                numbered.append((int(suffix), Path(entry.path)))
    files = [path for _, path in sorted(numbered, reverse=True)]
    current, held = _stat(directory / LOG_NAME), _stat(directory / HOLD_NAME)
    if held is not None and (current is None or not same_file(held, current)):
        files.append(directory / HOLD_NAME)
    if current is not None:
        files.append(directory / LOG_NAME)
    return files


def _shift(directory: Path, max_files: int) -> None:
    """hold -> .1 -> .2 ...; the file that would become .max_files is removed."""
    if max_files > 1:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / rotated_name(max_files - 1))
    for index in range(max_files - 2, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.rename(directory / rotated_name(index), directory / rotated_name(index + 1))
    hold = directory / HOLD_NAME
    with contextlib.suppress(FileNotFoundError):
        if max_files > 1:
            os.rename(hold, directory / rotated_name(1))
        else:
            os.unlink(hold)


def request_reopen(directory: Path) -> bool:
    """Ask the container's conmon to replace ``ctr.log``; False if no conmon listens."""
    try:
        fd = os.open(directory / CONTROL_FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENXIO):  # no fifo, or conmon has exited
            return False
        raise
    try:
        os.write(fd, REOPEN_LOGS)
    except BlockingIOError:
        return False  # conmon is not reading its fifo; try again next pass
    finally:
        os.close(fd)
    return True


def rotate(directory: Path, limits: LogLimits = DEFAULT_LIMITS) -> None:
    """One pass over one container's log; a no-op for a directory without a log."""
    log, hold = directory / LOG_NAME, directory / HOLD_NAME
    with ROTATION_LOCK:
        current = _stat(log)
        if current is None:
            return  # not created yet, or being deleted
        held = _stat(hold)
        if held is not None and not same_file(held, current):
            _shift(directory, limits.max_files)
            held = None
        if held is None:
            try:
                os.link(log, hold)
            except FileNotFoundError:
                return  # the container directory went away under us
            except FileExistsError:
                pass
    if current.st_size > limits.max_size:
        request_reopen(directory)


def remove_logs(directory: Path) -> None:
    """Delete the container's log files; a pass after this finds nothing to do.

    containers.Runtime.delete calls it before removing the directory, so that a pass
    cannot link a hold file into a directory that is being removed.
    """
    with ROTATION_LOCK:
        for path in [*log_files(directory), directory / HOLD_NAME]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def disk_usage(directory: Path) -> int:
    """Bytes the container's log files take, each inode counted once."""
    seen: dict[tuple[int, int], int] = {}
    for path in [*log_files(directory), directory / HOLD_NAME]:
        st = _stat(path)
        if st is not None:
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())
