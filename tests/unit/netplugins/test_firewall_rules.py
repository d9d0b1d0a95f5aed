"""The firewall's pure parts: rendering nft transactions, reading nft's JSON back, CHECK's
diff, and the iptables comment matching. A tiny interpreter of the nft commands we render
stands in for the kernel, so the property tests can run any order of apply and remove.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplugins.firewall.docker import accept_specs, owned_lines
from netplugins.firewall.rules import (
    Base,
    Chain,
    ChainState,
    Ruleset,
    TableState,
    parse_table,
    problems,
    render_apply,
    render_remove,
    rule_tag,
)

LISTING = json.dumps({"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "ip", "name": "berth", "handle": 1}},
    {"chain": {"family": "ip", "table": "berth", "name": "filter-fwd", "handle": 1,
               "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
    {"chain": {"family": "ip", "table": "berth", "name": "bb-1.filter-fwd", "handle": 2}},
    {"rule": {"family": "ip", "table": "berth", "chain": "filter-fwd", "handle": 4,
              "expr": [{"jump": {"target": "bb-1.filter-fwd"}}]}},
    {"rule": {"family": "ip", "table": "berth", "chain": "bb-1.filter-fwd", "handle": 3,
              "comment": "berth:abc", "expr": [
                  {"match": {"op": "==", "left": {"meta": {"key": "oifname"}},
                             "right": "bb-1"}}, {"drop": None}]}},
]})


def test_parse_table_reads_hooks_jumps_and_tags() -> None:
    chains = parse_table(LISTING)
    assert chains["filter-fwd"] == ChainState("filter-fwd", ("filter", "forward", 0, "accept"),
                                              (), ("bb-1.filter-fwd",), 1)
    assert chains["bb-1.filter-fwd"] == ChainState("bb-1.filter-fwd", None, ("berth:abc",), (),
                                                   1)


@dataclass
class FakeNft:
    """Applies the subset of nft commands the renderer emits, with nft's own refusals:
    deleting a chain that is still jumped to, or a table that does not exist, fails."""

    tables: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    hooks: dict[tuple[str, str], str] = field(default_factory=dict)

    def run(self, script: str) -> None:
        for line in script.splitlines():
            self.command(line)

    def command(self, line: str) -> None:
        words = line.split()
        verb, kind, family = words[0], words[1], words[2]
        if kind == "table":
            if verb == "add":
                self.tables.setdefault(family, {})
            else:
                assert family in self.tables, line
                del self.tables[family]
            return
        chains = self.tables[family]
        name = words[4]
        if verb == "add" and kind == "chain":
            chains.setdefault(name, [])
            if "{" in line:
                self.hooks[(family, name)] = line[line.index("{"):]
        elif verb == "flush":
            chains[name] = []
        elif verb == "add" and kind == "rule":
            assert name in chains, line
            chains[name].append(" ".join(words[5:]))
        elif verb == "delete" and kind == "chain":
            assert not any(f"jump {name}" == r for rules in chains.values() for r in rules), line
            del chains[name]
        else:
            raise AssertionError(f"unexpected command {line}")

    def state(self) -> TableState:
        out: dict[str, dict[str, ChainState]] = {}
        for family, chains in self.tables.items():
            out[family] = {}
            for name, rules in chains.items():
                base = next((b for b in Base if b.family == family and b.chain == name), None)
                tags = tuple(m.group(1) for r in rules if (m := re.search(r'comment "(.*)"', r)))
                jumps = tuple(r.split()[1] for r in rules if r.startswith("jump "))
                out[family][name] = ChainState(name, base.hook if base else None, tags, jumps,
                                               len(rules))
        return TableState(out)


def ruleset(owner: str, *bases: Base) -> Ruleset:
    return Ruleset(owner, tuple(Chain(b, (f"oifname \"{owner}\" drop", "return")) for b in bases),
                   accept_ifaces=(owner,))


def test_apply_on_an_empty_kernel() -> None:
    rs = ruleset("bb-1", Base.FILTER_FWD, Base.BRIDGE_FWD)
    script = render_apply(rs, TableState())
    assert "add table ip berth" in script and "add table bridge berth" in script
    assert ("add chain ip berth filter-fwd { type filter hook forward priority 0; "
            "policy accept; }") in script
    assert f'add rule ip berth bb-1.filter-fwd return comment "{rule_tag("return")}"' in script
    kernel = FakeNft()
    kernel.run(script)
    assert problems(rs, kernel.state()) == []
    assert kernel.tables["ip"]["filter-fwd"] == ["jump bb-1.filter-fwd"]


def test_reapply_is_idempotent_and_keeps_other_owners_jumps() -> None:
    kernel = FakeNft()
    a, b = ruleset("bb-a", Base.FILTER_FWD), ruleset("bb-b", Base.FILTER_FWD, Base.NAT_POST)
    kernel.run(render_apply(a, kernel.state()))
    kernel.run(render_apply(b, kernel.state()))
    first = json.dumps(kernel.tables, sort_keys=True)
    kernel.run(render_apply(b, kernel.state()))
    kernel.run(render_apply(a, kernel.state()))
    assert json.dumps(kernel.tables, sort_keys=True) == first
    assert kernel.tables["ip"]["filter-fwd"] == ["jump bb-a.filter-fwd", "jump bb-b.filter-fwd"]


def test_apply_drops_chains_the_owner_no_longer_wants() -> None:
    kernel = FakeNft()
    kernel.run(render_apply(ruleset("c-1", Base.NAT_PRE, Base.NAT_OUT), kernel.state()))
    smaller = ruleset("c-1", Base.NAT_PRE)
    kernel.run(render_apply(smaller, kernel.state()))
    assert "c-1.nat-out" not in kernel.tables["ip"]
    assert kernel.tables["ip"]["nat-out"] == []
    assert problems(smaller, kernel.state()) == []


def test_remove_takes_jumps_chains_and_the_last_table() -> None:
    kernel = FakeNft()
    a, b = ruleset("bb-a", Base.FILTER_FWD, Base.BRIDGE_FWD), ruleset("bb-b", Base.FILTER_FWD)
    kernel.run(render_apply(a, kernel.state()))
    kernel.run(render_apply(b, kernel.state()))
    kernel.run(render_remove("bb-a", kernel.state()))
    assert set(kernel.tables) == {"ip"}, "the bridge table had only bb-a"
    assert kernel.tables["ip"]["filter-fwd"] == ["jump bb-b.filter-fwd"]
    assert render_remove("bb-a", kernel.state()) == ""
    kernel.run(render_remove("bb-b", kernel.state()))
    assert kernel.tables == {}


CHECK_CASES = [
    pytest.param(lambda k: k.tables["ip"].pop("bb-1.nat-post") and
                 k.tables["ip"]["nat-post"].clear(), "nat-post is missing", id="chain-gone"),
    pytest.param(lambda k: k.tables["ip"]["filter-fwd"].clear(),
                 "does not jump to bb-1.filter-fwd exactly once", id="jump-gone"),
    pytest.param(lambda k: k.tables["ip"]["filter-fwd"].append("jump bb-1.filter-fwd"),
                 "does not jump to bb-1.filter-fwd exactly once", id="jump-twice"),
    pytest.param(lambda k: k.tables["ip"]["bb-1.filter-fwd"].pop(),
                 "bb-1.filter-fwd differs: 1 rules, want 2 (1 missing)", id="rule-gone"),
    pytest.param(lambda k: k.tables["ip"]["bb-1.filter-fwd"].append("accept"),
                 "bb-1.filter-fwd differs: 3 rules, want 2", id="rule-added"),
    pytest.param(lambda k: k.tables["ip"].setdefault("bb-1.nat-out", []),
                 "bb-1.nat-out should not exist", id="extra-chain"),
    pytest.param(lambda k: k.tables["ip"].pop("filter-fwd") and None,
                 "base chain ip berth filter-fwd is missing", id="base-gone"),
]


@pytest.mark.parametrize(("damage", "complaint"), CHECK_CASES)
def test_check_names_what_differs(damage: object, complaint: str) -> None:
    rs = ruleset("bb-1", Base.FILTER_FWD, Base.NAT_POST)
    kernel = FakeNft()
    kernel.run(render_apply(rs, kernel.state()))
    assert callable(damage)
    damage(kernel)
    found = problems(rs, kernel.state())
    assert any(complaint in p for p in found), found


@pytest.mark.parametrize("rule", ["drop\naccept", "drop; accept", "drop # x",
                                  'drop comment "x"', " "],
                         ids=["newline", "semicolon", "hash", "comment", "blank"])
def test_a_chain_refuses_anything_but_one_plain_rule(rule: str) -> None:
    with pytest.raises(ValueError, match="not a single plain nft rule"):
        Chain(Base.FILTER_FWD, (rule,))


@pytest.mark.parametrize("owner", ["", "Bb-1", "1bb", "bb 1", "bb.1", "a" * 42],
                         ids=["empty", "upper", "digit-first", "space", "dot", "long"])
def test_owner_names_are_checked(owner: str) -> None:
    with pytest.raises(ValueError, match="bad firewall owner name"):
        Ruleset(owner)


def test_iptables_lines_match_exactly_our_comment() -> None:
    listing = "\n".join([
        "-P FORWARD DROP",
        '-A FORWARD -i bb-1 -m comment --comment "berth:bb-1" -j ACCEPT',
        '-A FORWARD -i bb-12 -m comment --comment "berth:bb-12" -j ACCEPT',
        '-A FORWARD -o bb-1 -m comment --comment "berth:bb-1 and more" -j ACCEPT',
        "-A FORWARD -i docker0 -j ACCEPT",
        '-A DOCKER-USER -o bb-1 -m comment --comment "berth:bb-1" -j ACCEPT',
    ])
    assert owned_lines(listing, "FORWARD", "bb-1") == [accept_specs("bb-1", ("bb-1",))[0]]


OWNERS = st.sampled_from(["bb-a", "bb-b", "berth0", "c-1", "c-2"])
BASE_SETS = st.sets(st.sampled_from(list(Base)), max_size=4)
STEPS = st.lists(st.tuples(st.booleans(), OWNERS, BASE_SETS), max_size=12)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(STEPS)
def test_any_order_of_apply_and_remove_keeps_the_tables_consistent(
        steps: list[tuple[bool, str, set[Base]]]) -> None:
    kernel, wanted = FakeNft(), {}
    for is_apply, owner, bases in steps:
        if is_apply:
            rs = ruleset(owner, *sorted(bases, key=lambda b: b.value))
            kernel.run(render_apply(rs, kernel.state()))
            wanted[owner] = rs
        else:
            kernel.run(render_remove(owner, kernel.state()))
            wanted.pop(owner, None)
        state = kernel.state()
        for rs in wanted.values():
            assert problems(rs, state) == []
        for family, chains in kernel.tables.items():
            targets = [r.split()[1] for rules in chains.values() for r in rules
                       if r.startswith("jump ")]
            assert len(targets) == len(set(targets)), "a jump is duplicated"
            assert all(t in chains for t in targets), "a jump to a missing chain"
            owned = {n for n in chains if "." in n}
            assert owned == set(targets), f"{family}: chains without their jump"
    assert kernel.state().owners() == {o for o, rs in wanted.items() if rs.chains}
