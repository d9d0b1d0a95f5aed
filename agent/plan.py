"""Pure diff of desired containers (assignments) against actual ones (runtime).

The reconciler calls ``plan`` on every pass with fresh facts and carries out the
actions it returns; nothing here touches etcd or the kernel, so the table of
cases is unit-tested directly.

A ``network_mode: container:X`` joiner lives in the netns of the X init it joined. When
X gets a new init (recreated, restarted) or stops, that netns is dead or going, so the
joiner is recreated with it (Kubernetes does the same for a pod's containers); while X
is not running its create waits (a PendingError from the runtime).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from agent.runtime.netmode import InitId, JoinedNetns
from berth.lifecycle import ContainerState
from berth.records import ContainerSpec


class Step(enum.Enum):
    CREATE = "create"  # not on this node yet: create and start
    RECREATE = "recreate"  # spec changed, or stuck half-made: delete then create
    DELETE = "delete"  # no longer assigned here
    KEEP = "keep"  # nothing to do but report status


@dataclass(frozen=True)
class Actual:
    """What the runtime reports for one container, reduced to what planning needs."""

    name: str
    state: ContainerState      # as the runtime derived it (berth.lifecycle)
    spec: ContainerSpec | None
    started: bool = True       # False: create never completed (agent died inside it)
    joined: JoinedNetns | None = None   # container:X: the X init whose netns it joined
    target: InitId | None = None        # X's running init now; None: X is not running


@dataclass(frozen=True)
class Action:
    step: Step
    name: str
    spec: ContainerSpec | None


def stale_join(have: Actual) -> bool:
    """A joiner whose target no longer runs the init it joined."""
    return have.joined is not None and have.joined.init != have.target


def _needs_recreate(want: ContainerSpec, have: Actual) -> bool:
    if have.spec is None or have.spec != want or stale_join(have):
        return True
    # "created" outside an agent pass, or "exited" without ever starting, means an
    # agent died between create and start: its network may be half-made, so start
    # over rather than guess.
    return have.state is ContainerState.CREATED or (
        have.state is ContainerState.EXITED and not have.started)


def plan(desired: Mapping[str, ContainerSpec], actual: Mapping[str, Actual]) -> list[Action]:
    actions: list[Action] = []
    for name in sorted(set(desired) | set(actual)):
        want, have = desired.get(name), actual.get(name)
        if want is None:
            actions.append(Action(Step.DELETE, name, None))
        elif have is None:
            actions.append(Action(Step.CREATE, name, want))
        elif _needs_recreate(want, have):
            actions.append(Action(Step.RECREATE, name, want))
        else:
            actions.append(Action(Step.KEEP, name, want))
    return actions
