"""The agent's diff of assignments against running containers."""

from __future__ import annotations

import pytest

from agent.plan import Actual, Step, plan, stale_join
from agent.runtime.netmode import InitId, JoinedNetns
from berth.lifecycle import ContainerState as S
from berth.records import ContainerSpec


def spec(name: str, generation: int = 1, image: str = "busybox:latest") -> ContainerSpec:
    return ContainerSpec(name=name, service="web", node="h1", image=image, generation=generation)


CASES = [
    pytest.param({"web-1": spec("web-1")}, {}, Step.CREATE, id="assigned-not-running-creates"),
    pytest.param(
        {},
        {"web-1": Actual("web-1", S.RUNNING, spec("web-1"))},
        Step.DELETE,
        id="running-not-assigned-deletes",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", S.RUNNING, spec("web-1"))},
        Step.KEEP,
        id="same-spec-keeps",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", S.EXITED, spec("web-1"))},
        Step.KEEP,
        id="exited-same-spec-stays-exited",
    ),
    pytest.param(
        {"web-1": spec("web-1", 2)},
        {"web-1": Actual("web-1", S.RUNNING, spec("web-1"))},
        Step.RECREATE,
        id="new-generation-recreates",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", S.EXITED, spec("web-1"), started=False)},
        Step.RECREATE,
        id="create-never-finished-recreates",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", S.CREATED, spec("web-1"))},
        Step.RECREATE,
        id="half-made-recreates",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", S.RUNNING, None)},
        Step.RECREATE,
        id="unknown-spec-recreates",
    ),
]


@pytest.mark.parametrize(("desired", "actual", "step"), CASES)
def test_plan_verb(
    desired: dict[str, ContainerSpec], actual: dict[str, Actual], step: Step
) -> None:
    (action,) = plan(desired, actual)
    assert action.step is step
    assert action.name == "web-1"


def joiner(name: str = "web-1") -> ContainerSpec:
    return ContainerSpec(name=name, service="web", node="h1", image="busybox:latest",
                         network_mode="container:db-1")


JOINED = JoinedNetns("db-1", InitId(pid=300, start=9001))


@pytest.mark.parametrize(
    ("state", "target", "step"),
    [
        pytest.param(S.RUNNING, InitId(300, 9001), Step.KEEP, id="same-target-init-keeps"),
        pytest.param(S.RUNNING, InitId(301, 9400), Step.RECREATE, id="target-recreated"),
        pytest.param(S.RUNNING, InitId(300, 9999), Step.RECREATE, id="target-pid-reused"),
        pytest.param(S.RUNNING, None, Step.RECREATE, id="target-stopped-or-gone"),
        pytest.param(S.EXITED, InitId(300, 9001), Step.KEEP, id="exited-joiner-same-target"),
        pytest.param(S.EXITED, InitId(301, 9400), Step.RECREATE,
                     id="exited-joiner-recreated-with-its-target"),
    ],
)
def test_joiner_follows_its_targets_init(state: S, target: InitId | None, step: Step) -> None:
    have = Actual("web-1", state, joiner(), joined=JOINED, target=target)
    (action,) = plan({"web-1": joiner()}, {"web-1": have})
    assert action.step is step
    assert stale_join(have) is (step is Step.RECREATE)


def test_a_container_that_joined_nothing_never_counts_as_stale() -> None:
    have = Actual("web-1", S.RUNNING, spec("web-1"), target=None)
    assert not stale_join(have)
    (action,) = plan({"web-1": spec("web-1")}, {"web-1": have})
    assert action.step is Step.KEEP


def test_plan_covers_every_name_once_in_order() -> None:
    desired = {"b": spec("b"), "a": spec("a")}
    actual = {"c": Actual("c", S.RUNNING, spec("c"))}
    assert [(a.name, a.step) for a in plan(desired, actual)] == [
        ("a", Step.CREATE),
        ("b", Step.CREATE),
        ("c", Step.DELETE),
    ]
