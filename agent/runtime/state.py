"""Container lifecycle in the runtime: states derived from kernel facts, checked writes.

containers.Runtime is the only caller. Design notes, after runc's state_linux.go:

- The vocabulary and the allowed transitions are berth.lifecycle's, shared with the
  controller and clusterctl. What a container *is* comes from ``derive``, a pure
  function of the record and the kernel's facts (init pid alive with its recorded
  start time, runc's exec fifo, the parsed ``runc state`` JSON, conmon's exit file),
  table-tested with fake facts.
- The record only holds what the kernel cannot tell us (the spec, timestamps, pids
  with their start times to survive pid reuse). Every write of it goes through
  ``commit``, which checks the change against ``TRANSITIONS`` and raises
  InvalidTransition on the production path.
- ``VERBS`` says which lifecycle verbs each state accepts. There is no way back from
  exited except through restarting: a restart is a new create, as with runc.
- The record is written with temp file + rename so a crash leaves the old or the
  new version, never half of one.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.runtime.errors import InvalidTransition
from berth.lifecycle import TRANSITIONS, ContainerState, can_transition
from berth.records import ContainerSpec

RECORD_NAME = "state.json"
S = ContainerState

__all__ = ["TRANSITIONS", "ContainerState", "can_transition"]


class Verb(enum.StrEnum):
    START = "start"
    KILL = "kill"
    STOP = "stop"
    EXEC = "exec"
    DELETE = "delete"


# stop of an exited container and delete of a deleted one are no-ops, as in Docker.
VERBS: dict[Verb, frozenset[ContainerState]] = {
    Verb.START: frozenset({S.CREATED}),
    Verb.KILL: frozenset({S.CREATED, S.RUNNING, S.PAUSED}),
    Verb.STOP: frozenset({S.CREATED, S.RUNNING, S.PAUSED, S.EXITED}),
    Verb.EXEC: frozenset({S.RUNNING}),
    Verb.DELETE: frozenset(TRANSITIONS),
}


def check_verb(verb: Verb, state: ContainerState, name: str) -> None:
    """Raise InvalidTransition when ``verb`` is not allowed on a container in ``state``."""
    if state not in VERBS[verb]:
        raise InvalidTransition(f"cannot {verb} container {name}: it is {state}")


@dataclass(frozen=True)
class Facts:
    """What the kernel and the monitor say about one container right now."""

    init_alive: bool              # the recorded init pid runs, with the recorded start time
    exec_fifo: bool = False       # runc's exec.fifo exists: created, start never opened it
    runc_status: str | None = None  # "status" of `runc state` JSON, when it was asked
    exit_code: int | None = None  # conmon's exit file
    monitor_alive: bool = False   # conmon still runs (it may write the exit file yet)


@dataclass(frozen=True)
class Derived:
    state: ContainerState
    exit_code: int | None = None
    error: str = ""


def needs_runc_state(record: Record, facts: Facts) -> bool:
    """Only an init that runs, was never marked started, and has no exec fifo is ambiguous:
    the agent may have died inside start. Then ``runc state`` settles it."""
    return facts.init_alive and not record.started_at and not facts.exec_fifo


def derive(record: Record, facts: Facts) -> Derived:
    """The container's state from its record and the kernel's facts; no I/O."""
    if facts.init_alive:
        if facts.runc_status == "paused":
            return Derived(S.PAUSED)
        if record.started_at or facts.runc_status == "running":
            return Derived(S.RUNNING)
        return Derived(S.CREATED)
    if not record.pid:
        return Derived(S.EXITED, error="create did not complete")
    if facts.exit_code is not None:
        return Derived(S.EXITED, exit_code=facts.exit_code)
    if facts.monitor_alive:
        return Derived(S.EXITED, error="exit code not recorded yet")
    return Derived(S.EXITED, error="monitor exited without recording an exit code")


def parse_runc_state(stdout: str) -> str | None:
    """The ``status`` field of ``runc state`` output, or None if it is not that JSON."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else None


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie ``pid``; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def pid_alive(pid: int, start_time: int) -> bool:
    """True when ``pid`` still names the process that had ``start_time`` (no pid reuse)."""
    return pid > 0 and proc_start_time(pid) == start_time


@dataclass(frozen=True)
class Record:
    """What the runtime must remember about a container across agent restarts."""

    spec: ContainerSpec
    image_id: str
    runtime: str
    created_at: str
    pid: int = 0
    pid_start: int = 0
    conmon_pid: int = 0
    conmon_start: int = 0
    started_at: str = ""
    # network_mode container:X: X's init whose netns this container joined.
    joined: str = ""
    joined_pid: int = 0
    joined_start: int = 0

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def dumps(self) -> str:
        data = asdict(self)
        data["spec"] = json.loads(self.spec.model_dump_json())
        return json.dumps(data, indent=1)

    @classmethod
    def loads(cls, raw: str | bytes) -> Record:
        data = json.loads(raw)
        data["spec"] = ContainerSpec.model_validate(data["spec"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def commit(container_dir: Path, record: Record, src: ContainerState | None,
           dst: ContainerState) -> None:
    """Write ``record`` as the change ``src`` -> ``dst``; InvalidTransition if not allowed.

    ``src`` is None for a new container. The runtime writes its record only here.
    """
    if not can_transition(src, dst):
        raise InvalidTransition(
            f"container {record.spec.name}: cannot go from {src or 'nothing'} to {dst}")
    _write(container_dir, record)


def _write(container_dir: Path, record: Record) -> None:
    path = container_dir / RECORD_NAME
    tmp = path.with_suffix(".tmp")
    # No fsync: the record must survive an agent crash (page cache does), and after a
    # host crash there is no container left to adopt anyway.
    tmp.write_text(record.dumps(), encoding="utf-8")
    os.replace(tmp, path)


def read_record(container_dir: Path) -> Record | None:
    try:
        return Record.loads((container_dir / RECORD_NAME).read_text())
    except FileNotFoundError:
        return None
