"""Container lifecycle: the state machine and the per-container record on disk.

containers.Runtime is the only caller. Design notes, after runc's state_linux.go:

- ``State`` is what a container *is*, and is derived from kernel facts on every
  query (init pid alive with the recorded start time, the monitor's exit file);
  the record only holds what the kernel cannot tell us (the spec, timestamps,
  pids with their start times to survive pid reuse).
- ``VERBS`` says which lifecycle verbs each state accepts, ``TRANSITIONS`` which
  state changes may ever happen. There is no way back from exited: a restart is a
  new create, as with runc.
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
from berth.records import ContainerSpec

RECORD_NAME = "state.json"


class State(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"      # runc calls this "stopped"
    DELETED = "deleted"


class Verb(enum.StrEnum):
    START = "start"
    KILL = "kill"
    STOP = "stop"
    EXEC = "exec"
    DELETE = "delete"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.RUNNING, State.EXITED, State.DELETED}),
    State.RUNNING: frozenset({State.EXITED, State.DELETED}),
    State.EXITED: frozenset({State.DELETED}),
    State.DELETED: frozenset(),
}

# stop of an exited container and delete of a deleted one are no-ops, as in Docker.
VERBS: dict[Verb, frozenset[State]] = {
    Verb.START: frozenset({State.CREATED}),
    Verb.KILL: frozenset({State.CREATED, State.RUNNING}),
    Verb.STOP: frozenset({State.CREATED, State.RUNNING, State.EXITED}),
    Verb.EXEC: frozenset({State.RUNNING}),
    Verb.DELETE: frozenset(State),
}


def can_transition(src: State, dst: State) -> bool:
    return dst in TRANSITIONS[src]


def check_verb(verb: Verb, state: State, name: str) -> None:
    """Raise InvalidTransition when ``verb`` is not allowed on a container in ``state``."""
    if state not in VERBS[verb]:
        raise InvalidTransition(f"cannot {verb} container {name}: it is {state}")


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


def write_record(container_dir: Path, record: Record) -> None:
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
