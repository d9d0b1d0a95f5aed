"""The container lifecycle: transition table, verbs, ``derive`` from facts, checked writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runtime.errors import InvalidTransition
from agent.runtime.state import (
    VERBS,
    Derived,
    Facts,
    Record,
    Verb,
    check_verb,
    commit,
    derive,
    parse_runc_state,
    read_record,
)
from berth import lifecycle
from berth.lifecycle import TRANSITIONS, ContainerState, can_transition
from berth.records import ContainerSpec

S = ContainerState
C, R, P, RS, E, D = S.CREATED, S.RUNNING, S.PAUSED, S.RESTARTING, S.EXITED, S.DELETED
RUNTIME = (C, R, P, RS, E, D)

ALLOWED = {
    (C, C), (C, R), (C, E), (C, D),
    (R, R), (R, P), (R, E), (R, D),
    (P, P), (P, R), (P, E), (P, D),
    (RS, R), (RS, E), (RS, D),
    (E, RS), (E, D),
}


@pytest.mark.parametrize(("src", "dst"), [(s, d) for s in RUNTIME for d in S],
                         ids=[f"{s}->{d}" for s in RUNTIME for d in S])
def test_transition_table(src: ContainerState, dst: ContainerState) -> None:
    assert can_transition(src, dst) is ((src, dst) in ALLOWED)


@pytest.mark.parametrize("dst", list(S), ids=[str(d) for d in S])
def test_a_new_container_can_only_be_created(dst: ContainerState) -> None:
    assert can_transition(None, dst) is (dst is C)


def test_states_only_the_cluster_knows_are_not_runtime_states() -> None:
    assert set(TRANSITIONS) == set(RUNTIME) == lifecycle.RUNTIME_STATES
    assert TRANSITIONS[D] == frozenset()  # deleted is terminal
    for cluster_only in (S.PENDING, S.FAILED, S.INVALID, S.REMOVING, S.UNKNOWN):
        assert not any(cluster_only in targets for targets in TRANSITIONS.values())


VERB_OK = {
    (Verb.START, C),
    (Verb.KILL, C), (Verb.KILL, R), (Verb.KILL, P),
    (Verb.STOP, C), (Verb.STOP, R), (Verb.STOP, P), (Verb.STOP, E),
    (Verb.EXEC, R),
    *((Verb.DELETE, s) for s in RUNTIME),
}


@pytest.mark.parametrize(("verb", "state"), [(v, s) for v in Verb for s in RUNTIME],
                         ids=[f"{v}-on-{s}" for v in Verb for s in RUNTIME])
def test_verbs_allowed_per_state(verb: Verb, state: ContainerState) -> None:
    if (verb, state) in VERB_OK:
        check_verb(verb, state, "web-1")
    else:
        with pytest.raises(InvalidTransition, match=f"cannot {verb} container web-1"):
            check_verb(verb, state, "web-1")
    assert set(VERBS) == set(Verb)


SPEC = ContainerSpec(name="web-1", service="web", node="h1", image="busybox")
NEW = Record(spec=SPEC, image_id="sha256:" + "a" * 64, runtime="runc", created_at="t0")
MADE = NEW.with_(pid=42, pid_start=7, conmon_pid=41, conmon_start=6)
STARTED = MADE.with_(started_at="t1")

DERIVE = [
    ("started-alive", STARTED, Facts(init_alive=True), Derived(R)),
    ("created-fifo", MADE, Facts(init_alive=True, exec_fifo=True), Derived(C)),
    ("died-inside-start-runc-running", MADE, Facts(init_alive=True, runc_status="running"),
     Derived(R)),
    ("died-inside-start-runc-created", MADE, Facts(init_alive=True, runc_status="created"),
     Derived(C)),
    ("runc-unreadable", MADE, Facts(init_alive=True, runc_status=None), Derived(C)),
    ("paused", STARTED, Facts(init_alive=True, runc_status="paused"), Derived(P)),
    ("exit-code", STARTED, Facts(init_alive=False, exit_code=137), Derived(E, 137)),
    ("exit-code-zero", STARTED, Facts(init_alive=False, exit_code=0), Derived(E, 0)),
    ("monitor-still-writing", STARTED, Facts(init_alive=False, monitor_alive=True),
     Derived(E, None, "exit code not recorded yet")),
    ("monitor-gone-no-code", STARTED, Facts(init_alive=False),
     Derived(E, None, "monitor exited without recording an exit code")),
    ("create-never-finished", NEW, Facts(init_alive=False),
     Derived(E, None, "create did not complete")),
]


@pytest.mark.parametrize(("record", "facts", "want"), [c[1:] for c in DERIVE],
                         ids=[c[0] for c in DERIVE])
def test_derive_from_facts(record: Record, facts: Facts, want: Derived) -> None:
    assert derive(record, facts) == want


@pytest.mark.parametrize(("stdout", "status"), [
    ('{"ociVersion": "1.0.2", "id": "x", "status": "running", "pid": 5}', "running"),
    ('{"status": "paused"}', "paused"),
    ('{"id": "x", "note": "status: running"}', None),   # a substring is not the field
    ("container x does not exist", None),
    ('["status", "running"]', None),
], ids=["running", "paused", "substring-only", "not-json", "not-an-object"])
def test_runc_state_is_parsed_not_grepped(stdout: str, status: str | None) -> None:
    assert parse_runc_state(stdout) == status


def test_commit_writes_allowed_changes_and_refuses_the_rest(tmp_path: Path) -> None:
    commit(tmp_path, NEW, None, C)
    commit(tmp_path, MADE, C, C)
    commit(tmp_path, STARTED, C, R)
    assert read_record(tmp_path) == STARTED
    with pytest.raises(InvalidTransition, match="cannot go from exited to running"):
        commit(tmp_path, STARTED.with_(started_at="t9"), E, R)
    with pytest.raises(InvalidTransition, match="cannot go from nothing to running"):
        commit(tmp_path, STARTED, None, R)
    assert read_record(tmp_path) == STARTED    # a refused change writes nothing
