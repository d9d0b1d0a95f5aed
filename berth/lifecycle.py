"""A container's lifecycle: the one state vocabulary and the transitions it allows.

Shared by the agent (its runtime derives a state from kernel facts and checks every
change of its record against ``TRANSITIONS``), the controller (which reports what the
agents write, plus the states only it can know) and clusterctl (which shows them).
runc's ``libcontainer/state_linux.go`` is the model: each state says where it may go,
and a change that is not in the table is an error raised on the production path.

States the runtime derives from the kernel::

    (new) ──▶ created ──▶ running ◀──▶ paused
                 │           │            │
                 ▼           ▼            ▼
              exited ◀───────┴────────────┘ ──▶ restarting ──▶ running
                 │
                 ▼
              deleted        (any state may go to deleted)

States only the cluster knows: ``pending`` (no agent has reported it), ``failed``
(the agent could not create or start it and is backing off), ``invalid`` (its
assignment cannot be processed: a poison pill), ``removing`` (unassigned, its agent
is still tearing it down) and ``unknown``. ``paused`` and ``restarting`` are there
for the runtime issue (docker pause, restart policies); health and oom_killed are
facts reported next to the state, not states.
"""

from __future__ import annotations

import enum

from berth.errors import PermanentError


class ContainerState(enum.StrEnum):
    PENDING = "pending"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    FAILED = "failed"
    INVALID = "invalid"
    REMOVING = "removing"
    DELETED = "deleted"
    UNKNOWN = "unknown"


class Health(enum.StrEnum):
    """A health check's verdict, reported beside the state (Docker's Health.Status)."""

    NONE = ""
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


S = ContainerState
# What the runtime's record may change to from each state it derives.
TRANSITIONS: dict[ContainerState, frozenset[ContainerState]] = {
    S.CREATED: frozenset({S.CREATED, S.RUNNING, S.EXITED, S.DELETED}),
    S.RUNNING: frozenset({S.RUNNING, S.PAUSED, S.EXITED, S.DELETED}),
    S.PAUSED: frozenset({S.PAUSED, S.RUNNING, S.EXITED, S.DELETED}),
    S.RESTARTING: frozenset({S.RUNNING, S.EXITED, S.DELETED}),
    S.EXITED: frozenset({S.RESTARTING, S.DELETED}),
    S.DELETED: frozenset(),
}
RUNTIME_STATES = frozenset(TRANSITIONS)
INITIAL = S.CREATED


class InvalidTransition(PermanentError):
    """A lifecycle change the table does not allow."""


def can_transition(src: ContainerState | None, dst: ContainerState) -> bool:
    """``src`` None is a new container, which can only be created."""
    if src is None:
        return dst is INITIAL
    return dst in TRANSITIONS.get(src, frozenset())


def check_transition(src: ContainerState | None, dst: ContainerState, name: str) -> None:
    """Raise InvalidTransition unless ``src`` -> ``dst`` is in the table."""
    if not can_transition(src, dst):
        raise InvalidTransition(f"container {name}: cannot go from {src or 'nothing'} to {dst}")
