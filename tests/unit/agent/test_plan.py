"""The agent's diff of assignments against running containers."""

from __future__ import annotations

import pytest

from agent.plan import Actual, Verb, plan
from berth.records import ContainerSpec


def spec(name: str, generation: int = 1, image: str = "busybox:latest") -> ContainerSpec:
    return ContainerSpec(name=name, service="web", node="h1", image=image, generation=generation)


CASES = [
    pytest.param({"web-1": spec("web-1")}, {}, Verb.CREATE, id="assigned-not-running-creates"),
    pytest.param(
        {},
        {"web-1": Actual("web-1", "running", spec("web-1"))},
        Verb.DELETE,
        id="running-not-assigned-deletes",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", "running", spec("web-1"))},
        Verb.KEEP,
        id="same-spec-keeps",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", "exited", spec("web-1"))},
        Verb.KEEP,
        id="exited-same-spec-stays-exited",
    ),
    pytest.param(
        {"web-1": spec("web-1", 2)},
        {"web-1": Actual("web-1", "running", spec("web-1"))},
        Verb.RECREATE,
        id="new-generation-recreates",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", "exited", spec("web-1"), started=False)},
        Verb.RECREATE,
        id="create-never-finished-recreates",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", "created", spec("web-1"))},
        Verb.RECREATE,
        id="half-made-recreates",
    ),
    pytest.param(
        {"web-1": spec("web-1")},
        {"web-1": Actual("web-1", "running", None)},
        Verb.RECREATE,
        id="unknown-spec-recreates",
    ),
]


@pytest.mark.parametrize(("desired", "actual", "verb"), CASES)
def test_plan_verb(
    desired: dict[str, ContainerSpec], actual: dict[str, Actual], verb: Verb
) -> None:
    (action,) = plan(desired, actual)
    assert action.verb is verb
    assert action.name == "web-1"


def test_plan_covers_every_name_once_in_order() -> None:
    desired = {"b": spec("b"), "a": spec("a")}
    actual = {"c": Actual("c", "running", spec("c"))}
    assert [(a.name, a.verb) for a in plan(desired, actual)] == [
        ("a", Verb.CREATE),
        ("b", Verb.CREATE),
        ("c", Verb.DELETE),
    ]
