"""The container lifecycle transition table (agent.runtime.state)."""

from __future__ import annotations

import pytest

from agent.runtime.errors import InvalidTransition
from agent.runtime.state import TRANSITIONS, VERBS, State, Verb, can_transition, check_verb

C, R, E, D = State.CREATED, State.RUNNING, State.EXITED, State.DELETED

ALLOWED = {(C, R), (C, E), (C, D), (R, E), (R, D), (E, D)}


@pytest.mark.parametrize(
    ("src", "dst"),
    [(s, d) for s in State for d in State],
    ids=[f"{s}->{d}" for s in State for d in State],
)
def test_transition_table(src: State, dst: State) -> None:
    assert can_transition(src, dst) is ((src, dst) in ALLOWED)


VERB_OK = {
    (Verb.START, C),
    (Verb.KILL, C), (Verb.KILL, R),
    (Verb.STOP, C), (Verb.STOP, R), (Verb.STOP, E),
    (Verb.EXEC, R),
    (Verb.DELETE, C), (Verb.DELETE, R), (Verb.DELETE, E), (Verb.DELETE, D),
}


@pytest.mark.parametrize(
    ("verb", "state"),
    [(v, s) for v in Verb for s in State],
    ids=[f"{v}-on-{s}" for v in Verb for s in State],
)
def test_verbs_allowed_per_state(verb: Verb, state: State) -> None:
    if (verb, state) in VERB_OK:
        check_verb(verb, state, "web-1")
    else:
        with pytest.raises(InvalidTransition, match=f"cannot {verb} container web-1"):
            check_verb(verb, state, "web-1")


def test_every_state_and_verb_is_in_the_tables() -> None:
    assert set(TRANSITIONS) == set(State)
    assert set(VERBS) == set(Verb)
    assert TRANSITIONS[D] == frozenset()  # deleted is terminal; restart means a new create
