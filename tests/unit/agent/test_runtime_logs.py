"""k8s-file log parsing and image reference normalisation (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runtime.errors import InvalidReference
from agent.runtime.logs import LogEntry, parse, read_logs
from agent.runtime.reference import familiar, normalize

T1 = "2026-01-01T00:00:00.000000001+00:00"
T2 = "2026-01-01T00:00:01.000000000+00:00"


def test_partial_lines_are_joined_per_stream() -> None:
    lines = [f"{T1} stdout P abc", f"{T1} stderr F err", f"{T2} stdout F def", f"{T2} stdout F "]
    assert list(parse(lines)) == [
        LogEntry(T1, "stderr", "err"), LogEntry(T1, "stdout", "abcdef"), LogEntry(T2, "stdout", ""),
    ]


def test_trailing_partial_is_kept_and_text_spaces_survive() -> None:
    assert list(parse([f"{T1} stdout F a  b ", f"{T2} stdout P tail"])) == [
        LogEntry(T1, "stdout", "a  b "), LogEntry(T2, "stdout", "tail"),
    ]


@pytest.mark.parametrize(("tail", "expected"), [(-1, ["1", "2", "3"]), (2, ["2", "3"]), (0, [])],
                         ids=["all", "last-two", "none"])
async def test_tail(tmp_path: Path, tail: int, expected: list[str]) -> None:
    log = tmp_path / "ctr.log"
    complete = "".join(f"{T1} stdout F {i}\n" for i in (1, 2, 3))
    log.write_text(complete + f"{T2} stdout F unterminated")
    assert [e.line async for e in read_logs(tmp_path, tail=tail)] == expected


@pytest.mark.parametrize(
    ("ref", "canonical"),
    [("busybox", "docker.io/library/busybox:latest"),
     ("busybox:1.36", "docker.io/library/busybox:1.36"),
     ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
     ("team/app", "docker.io/team/app:latest"),
     ("localhost:5000/app:v2", "localhost:5000/app:v2"),
     ("registry.example.com/a/b/c", "registry.example.com/a/b/c:latest")],
    ids=["bare", "tag", "full", "user-repo", "registry-port", "nested"],
)
def test_reference_normalisation(ref: str, canonical: str) -> None:
    assert normalize(ref) == canonical
    assert normalize(familiar(canonical)) == canonical


@pytest.mark.parametrize("ref", ["", "UPPER/case", "a:b:c", "bad tag:x", "x@sha256:zz"],
                         ids=["empty", "uppercase", "two-colons", "space", "bad-digest"])
def test_invalid_references(ref: str) -> None:
    with pytest.raises(InvalidReference):
        normalize(ref)
