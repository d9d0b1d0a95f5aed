"""The agent's diff of assignments against running containers."""

from __future__ import annotations

import pytest

from agent.plan import Actual, Step, plan
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


def test_plan_covers_every_name_once_in_order() -> None:
    desired = {"b": spec("b"), "a": spec("a")}
    actual = {"c": Actual("c", S.RUNNING, spec("c"))}
    assert [(a.name, a.step) for a in plan(desired, actual)] == [
        ("a", Step.CREATE),
        ("b", Step.CREATE),
        ("c", Step.DELETE),
    ]
