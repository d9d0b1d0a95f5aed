"""Log rotation and reading across rotated files: tail from the end, follow across rotation.

The files are written here the way conmon writes them (k8s-file lines, and a new
file renamed over ctr.log when it "truncates"); the rotator is the real one.
"""

from __future__ import annotations

import itertools
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.runtime.logrotate import (
    HOLD_NAME,
    LOG_NAME,
    LogLimits,
    disk_usage,
    log_files,
    remove_logs,
    rotate,
    rotated_name,
)
from agent.runtime.logs import LogEntry, LogReader, parse, read_logs

T = "2026-01-01T00:00:00.000000001+00:00"
LIMITS = LogLimits(max_size=4096, max_files=3)
KEEP_ALL = LogLimits(max_size=4096, max_files=100)


def line(text: str, stream: str = "stdout", tag: str = "F") -> str:
    return f"{T} {stream} {tag} {text}\n"


def append(directory: Path, *texts: str) -> None:
    with open(directory / LOG_NAME, "a") as f:
        f.write("".join(line(t) for t in texts))


def conmon_replaces(directory: Path) -> None:
    """What conmon does at --log-size-max or on a reopen request."""
    tmp = directory / (LOG_NAME + ".tmp")
    tmp.write_bytes(b"")
    os.rename(tmp, directory / LOG_NAME)


def lines_of(reader: LogReader) -> list[str]:
    out: list[str] = []
    while True:
        entries, more = reader.read_batch()
        out += [e.line for e in entries]
        if not more:
            return out


# --- rotation ---------------------------------------------------------------------------


def test_replaced_log_is_kept_as_rotated_files_up_to_the_limit(tmp_path: Path) -> None:
    append(tmp_path, "gen-0")
    rotate(tmp_path, LIMITS)
    for gen in range(1, 5):
        conmon_replaces(tmp_path)
        append(tmp_path, f"gen-{gen}")
        rotate(tmp_path, LIMITS)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [LOG_NAME, rotated_name(1), rotated_name(2), HOLD_NAME]
    assert [p.read_text().split()[-1] for p in log_files(tmp_path)] == ["gen-2", "gen-3", "gen-4"]
    assert os.stat(tmp_path / HOLD_NAME).st_ino == os.stat(tmp_path / LOG_NAME).st_ino


def test_a_replacement_while_no_rotator_ran_keeps_the_held_file(tmp_path: Path) -> None:
    # The agent was down (or restarted) when conmon replaced the file: the held one is
    # shifted by the first pass of the new agent, and readers see it before that pass.
    append(tmp_path, "old")
    rotate(tmp_path, LIMITS)
    conmon_replaces(tmp_path)
    append(tmp_path, "new")
    assert [e.line for e in parse_dir(tmp_path)] == ["old", "new"]
    rotate(tmp_path, LIMITS)
    assert (tmp_path / rotated_name(1)).read_text() == line("old")
    assert [e.line for e in parse_dir(tmp_path)] == ["old", "new"]


def test_one_file_limit_keeps_only_the_current_file(tmp_path: Path) -> None:
    append(tmp_path, "a")
    rotate(tmp_path, LogLimits(max_size=4096, max_files=1))
    conmon_replaces(tmp_path)
    rotate(tmp_path, LogLimits(max_size=4096, max_files=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_NAME, HOLD_NAME]


def test_an_oversized_log_without_a_listening_conmon_is_left_alone(tmp_path: Path) -> None:
    append(tmp_path, "x" * 5000)
    os.mkfifo(tmp_path / "ctl")   # nobody reads it: conmon is gone
    rotate(tmp_path, LIMITS)
    assert disk_usage(tmp_path) == (tmp_path / LOG_NAME).stat().st_size


def test_oversized_log_asks_conmon_to_reopen(tmp_path: Path) -> None:
    append(tmp_path, "x" * 5000)
    os.mkfifo(tmp_path / "ctl")
    reader = os.open(tmp_path / "ctl", os.O_RDONLY | os.O_NONBLOCK)
    try:
        rotate(tmp_path, LIMITS)
        assert os.read(reader, 100) == b"2 0 0\n"
    finally:
        os.close(reader)


def test_rotation_of_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    rotate(tmp_path / "gone", LIMITS)
    assert log_files(tmp_path / "gone") == []


@pytest.mark.parametrize(("size", "files"), [(100, 5), (4096, 0)], ids=["tiny", "no-files"])
def test_limits_are_validated(size: int, files: int) -> None:
    with pytest.raises(ValueError, match="log max"):
        LogLimits(max_size=size, max_files=files)


# --- tail -------------------------------------------------------------------------------


def parse_dir(directory: Path, tail: int = -1) -> list[LogEntry]:
    reader = LogReader(directory, tail)
    try:
        out: list[LogEntry] = []
        while True:
            entries, more = reader.read_batch()
            out += entries
            if not more:
                return out + reader.flush()
    finally:
        reader.close()


def test_tail_reaches_into_rotated_files(tmp_path: Path) -> None:
    (tmp_path / rotated_name(2)).write_text(line("1") + line("2"))
    (tmp_path / rotated_name(1)).write_text(line("3") + line("4"))
    (tmp_path / LOG_NAME).write_text(line("5"))
    assert [e.line for e in parse_dir(tmp_path, 4)] == ["2", "3", "4", "5"]
    assert [e.line for e in parse_dir(tmp_path, 1)] == ["5"]
    assert [e.line for e in parse_dir(tmp_path, 50)] == ["1", "2", "3", "4", "5"]


def test_tail_joins_a_line_split_across_a_rotation(tmp_path: Path) -> None:
    (tmp_path / rotated_name(1)).write_text(line("a") + line("hel", tag="P"))
    (tmp_path / LOG_NAME).write_text(line("lo") + line("b", "stderr"))
    assert [e.line for e in parse_dir(tmp_path, 2)] == ["hello", "b"]


def test_tail_of_a_big_file_reads_only_its_end(tmp_path: Path) -> None:
    # 16 MB of log; the old reader loaded all of it (and more) to print 3 lines.
    chunk = "".join(line(f"{i:07d} " + "y" * 100) for i in range(10_000)).encode()
    with open(tmp_path / LOG_NAME, "wb") as f:
        for _ in range(16):
            f.write(chunk)
    tracemalloc.start()
    try:
        got = [e.line[:7] for e in parse_dir(tmp_path, 3)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == ["0009997", "0009998", "0009999"]
    assert peak < 2 * 1024 * 1024, f"tail held {peak} bytes"


def test_whole_read_streams_in_bounded_memory(tmp_path: Path) -> None:
    chunk = "".join(line("z" * 200) for _ in range(5000)).encode()
    with open(tmp_path / LOG_NAME, "wb") as f:
        for _ in range(16):
            f.write(chunk)
    reader = LogReader(tmp_path)
    tracemalloc.start()
    try:
        count = 0
        while True:
            entries, more = reader.read_batch()
            count += len(entries)
            del entries
            if not more:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        reader.close()
    assert count == 80_000
    assert peak < 4 * 1024 * 1024, f"whole read held {peak} bytes"


chunks = st.tuples(st.sampled_from(["stdout", "stderr"]), st.booleans(),
                   st.text(alphabet="ab c", max_size=5))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(chunks, max_size=40), splits=st.lists(st.integers(0, 40), max_size=3),
       tail=st.integers(0, 45))
def test_tail_matches_the_last_entries_of_a_full_parse(
    tmp_path: Path, chunks: list[tuple[str, bool, str]], splits: list[int], tail: int
) -> None:
    """Interleaved partial chunks of two streams, spread over rotated files."""
    raw = [line(text, stream, "P" if partial else "F") for stream, partial, text in chunks]
    raw += [line("", s) for s in ("stdout", "stderr")]   # every entry is complete
    for p in tmp_path.iterdir():
        p.unlink()
    bounds = sorted({0, len(raw), *(min(s, len(raw)) for s in splits)})
    parts = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    names = [rotated_name(i) for i in range(len(parts) - 1, 0, -1)] + [LOG_NAME]
    for name, part in zip(names, parts, strict=True):
        (tmp_path / name).write_text("".join(part))
    everything = list(parse(r[:-1] for r in raw))
    expected = everything[-tail:] if tail else []
    assert parse_dir(tmp_path, tail) == expected
    assert parse_dir(tmp_path) == everything


# --- follow -----------------------------------------------------------------------------


def test_follow_crosses_rotations_without_loss_or_duplication(tmp_path: Path) -> None:
    append(tmp_path, "0")
    reader = LogReader(tmp_path, follow=True)
    seen = lines_of(reader)
    written = ["0"]
    n = 1
    for step in range(12):
        batch = [str(n + i) for i in range(3)]
        n += 3
        append(tmp_path, *batch)
        written += batch
        if step % 2 == 0:
            seen += lines_of(reader)  # sometimes the reader catches up in between
        rotate(tmp_path, KEEP_ALL)
        conmon_replaces(tmp_path)
        if step % 3 == 0:
            append(tmp_path, str(n))  # written right after the replacement
            written.append(str(n))
            n += 1
            rotate(tmp_path, KEEP_ALL)
            conmon_replaces(tmp_path)  # a second replacement before the reader looks
        rotate(tmp_path, KEEP_ALL)
    append(tmp_path, "last")
    written.append("last")
    seen += lines_of(reader)
    reader.close()
    assert seen == written


def test_follow_rereads_a_log_truncated_in_place(tmp_path: Path) -> None:
    append(tmp_path, "a", "b")
    reader = LogReader(tmp_path, follow=True)
    assert lines_of(reader) == ["a", "b"]
    (tmp_path / LOG_NAME).write_text(line("c"))
    assert lines_of(reader) == ["c"]
    reader.close()


def test_follow_waits_for_a_line_being_written(tmp_path: Path) -> None:
    (tmp_path / LOG_NAME).write_text(line("a") + f"{T} stdout F hal")
    reader = LogReader(tmp_path, follow=True)
    assert lines_of(reader) == ["a"]
    with open(tmp_path / LOG_NAME, "a") as f:
        f.write("f\n")
    assert lines_of(reader) == ["half"]
    reader.close()


async def test_read_logs_follows_until_exit_across_a_rotation(tmp_path: Path) -> None:
    append(tmp_path, "1")
    rotate(tmp_path, LIMITS)
    state = {"polls": 0}

    def exited() -> bool:
        # Called once per poll: rotate on the first, finish on the third.
        state["polls"] += 1
        if state["polls"] == 2:
            append(tmp_path, "2")
            conmon_replaces(tmp_path)
            append(tmp_path, "3")
        return state["polls"] >= 4

    got = [e.line async for e in read_logs(tmp_path, follow=True, exited=exited, poll=0)]
    assert got == ["1", "2", "3"]


def test_removed_logs_are_not_brought_back_by_a_pass(tmp_path: Path) -> None:
    append(tmp_path, "a")
    rotate(tmp_path, LIMITS)
    conmon_replaces(tmp_path)
    remove_logs(tmp_path)
    rotate(tmp_path, LIMITS)
    assert list(tmp_path.iterdir()) == []
