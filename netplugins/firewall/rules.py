"""The firewall's data model and its pure parts: what an owner asks for (``Ruleset``), how
that becomes one nft transaction, and how the kernel's JSON listing is read back.

Called by netplugins.firewall.firewall (the only part that runs commands) and by unit
tests; nothing here touches the kernel.

Layout in the kernel. berth owns ``table ip berth``, ``table inet berth`` (only the input
hook, for the node's own ports) and ``table bridge berth`` and nothing else. Each table has
fixed base chains (``Base``), which hold nothing but one ``jump`` per owner chain, sorted
by name. Each owner (one network, one container attachment) has at
most one chain per base, named ``<owner>.<base>``, e.g. ``bb-0a1b2c3d4e.filter-fwd``. Every
owner rule carries ``comment "berth:<hash of its text>"`` so that CHECK compares what it
asked for with what the kernel holds without depending on how nft prints a rule back.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE = "berth"
_OWNER = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_FORBIDDEN_IN_RULE = ("\n", "\r", ";", "#", "comment")


class Base(enum.Enum):
    """A base chain: (family, chain name, type, hook, priority); its policy is accept."""

    RAW_PRE = ("ip", "raw-pre", "filter", "prerouting", -300)
    NAT_PRE = ("ip", "nat-pre", "nat", "prerouting", -100)
    NAT_OUT = ("ip", "nat-out", "nat", "output", -100)
    NAT_POST = ("ip", "nat-post", "nat", "postrouting", 100)
    FILTER_FWD = ("ip", "filter-fwd", "filter", "forward", 0)
    BRIDGE_FWD = ("bridge", "filter-fwd", "filter", "forward", -200)
    # inet: one chain for IPv4 and IPv6 alike (the node's ports, nodeports.py).
    INPUT = ("inet", "filter-in", "filter", "input", 0)

    @property
    def family(self) -> str:
        return self.value[0]

    @property
    def chain(self) -> str:
        return self.value[1]

    @property
    def hook(self) -> tuple[str, str, int, str]:
        """(type, hook, priority, policy) as nft's JSON listing gives them."""
        return (self.value[2], self.value[3], self.value[4], "accept")

    @property
    def spec(self) -> str:
        kind, hook, prio, policy = self.hook
        return f"type {kind} hook {hook} priority {prio}; policy {policy};"


FAMILIES = ("ip", "inet", "bridge")


@dataclass(frozen=True)
class Chain:
    """The rules one owner puts on one base chain, in order (nft syntax, no comment)."""

    base: Base
    rules: tuple[str, ...]

    def __post_init__(self) -> None:
        for rule in self.rules:
            if not rule.strip() or any(bad in rule for bad in _FORBIDDEN_IN_RULE):
                raise ValueError(f"not a single plain nft rule: {rule!r}")


@dataclass(frozen=True)
class Ruleset:
    """Everything one owner wants in the firewall; applying it replaces what it had.

    ``accept_ifaces``: interfaces whose forwarded traffic must get past an iptables FORWARD
    policy of DROP (Docker's); berth's own chains still decide what is dropped.
    """

    owner: str
    chains: tuple[Chain, ...] = ()
    accept_ifaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_owner(self.owner)
        bases = [c.base for c in self.chains]
        if len(set(bases)) != len(bases):
            raise ValueError(f"owner {self.owner} has two chains on one base chain")

    def chain_names(self) -> dict[tuple[str, str], Chain]:
        return {(c.base.family, owner_chain(self.owner, c.base)): c for c in self.chains}


def check_owner(owner: str) -> None:
    if not _OWNER.match(owner):
        raise ValueError(f"bad firewall owner name {owner!r}")


def owner_chain(owner: str, base: Base) -> str:
    return f"{owner}.{base.chain}"


def rule_tag(rule: str) -> str:
    return "berth:" + hashlib.sha256(rule.encode()).hexdigest()[:12]


# -- what the kernel holds --------------------------------------------------------------


@dataclass(frozen=True)
class ChainState:
    """One chain of a berth table as listed: hook data (base chains) and its rules."""

    name: str
    hook: tuple[str, str, int, str] | None = None  # (type, hook, priority, policy), base only
    tags: tuple[str, ...] = ()                   # the comment of each rule, in order
    jumps: tuple[str, ...] = ()                  # jump/goto targets, in order
    rules: int = 0


@dataclass(frozen=True)
class TableState:
    """Both berth tables; a family missing from ``chains`` means that table does not exist."""

    chains: Mapping[str, Mapping[str, ChainState]] = field(default_factory=dict)

    def table_exists(self, family: str) -> bool:
        return family in self.chains

    def chain(self, family: str, name: str) -> ChainState | None:
        return self.chains.get(family, {}).get(name)

    def owner_chains(self, family: str, base_chain: str) -> list[str]:
        """Names of the owner chains (not base chains) that belong on ``base_chain``."""
        suffix = f".{base_chain}"
        return sorted(n for n in self.chains.get(family, {}) if n.endswith(suffix))

    def owners(self) -> set[str]:
        return {n.rsplit(".", 1)[0] for fam in self.chains.values() for n in fam if "." in n}

    def chains_of(self, owner: str) -> list[tuple[str, str]]:
        return sorted((fam, n) for fam, chains in self.chains.items() for n in chains
                      if n.rsplit(".", 1)[0] == owner and "." in n)


def _jump_target(expr: Iterable[Any]) -> str | None:
    for item in expr:
        if isinstance(item, dict):
            for verb in ("jump", "goto"):
                if verb in item and isinstance(item[verb], dict):
                    return str(item[verb].get("target", ""))
    return None


def parse_table(listing: str) -> dict[str, ChainState]:
    """Chains of one table from ``nft -j list table FAMILY berth``."""
    items = json.loads(listing).get("nftables", [])
    hooks: dict[str, tuple[str, str, int, str] | None] = {}
    tags: dict[str, list[str]] = {}
    jumps: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            hook = ((c["type"], c["hook"], int(c["prio"]), c.get("policy", "accept"))
                    if "hook" in c else None)
            hooks[c["name"]] = hook
        elif "rule" in item:
            r = item["rule"]
            name = r["chain"]
            counts[name] = counts.get(name, 0) + 1
            if "comment" in r:
                tags.setdefault(name, []).append(r["comment"])
            target = _jump_target(r.get("expr", []))
            if target is not None:
                jumps.setdefault(name, []).append(target)
    return {
        name: ChainState(name, hook, tuple(tags.get(name, ())), tuple(jumps.get(name, ())),
                         counts.get(name, 0))
        for name, hook in hooks.items()
    }


# -- rendering ------------------------------------------------------------------------


def _skeleton(families: Iterable[str]) -> list[str]:
    lines = []
    for family in sorted(set(families)):
        lines.append(f"add table {family} {TABLE}")
        for base in Base:
            if base.family == family:
                lines.append(f"add chain {family} {TABLE} {base.chain} {{ {base.spec} }}")
    return lines


def _rebuild_bases(bases: Iterable[Base], members: Mapping[Base, list[str]]) -> list[str]:
    lines = []
    for base in sorted(set(bases), key=lambda b: b.value):
        lines.append(f"flush chain {base.family} {TABLE} {base.chain}")
        for chain in sorted(members.get(base, [])):
            lines.append(f"add rule {base.family} {TABLE} {base.chain} jump {chain}")
    return lines


def render_apply(rs: Ruleset, state: TableState) -> str:
    """One nft transaction that makes ``rs`` the owner's whole content, nothing else moved.

    Owner chains are flushed and refilled, the base chains they hang on are rebuilt from
    every owner chain that will exist (so the jump is there exactly once), and chains the
    owner no longer wants are deleted after their jumps are gone.
    """
    wanted = rs.chain_names()
    stale = [(fam, name) for fam, name in state.chains_of(rs.owner) if (fam, name) not in wanted]
    lines = _skeleton(c.base.family for c in rs.chains)
    for chain in rs.chains:
        fam, name = chain.base.family, owner_chain(rs.owner, chain.base)
        lines.append(f"add chain {fam} {TABLE} {name}")
        lines.append(f"flush chain {fam} {TABLE} {name}")
        for rule in chain.rules:
            lines.append(f'add rule {fam} {TABLE} {name} {rule} comment "{rule_tag(rule)}"')
    touched = {c.base for c in rs.chains} | {_base_of(fam, name) for fam, name in stale}
    members = {
        base: sorted(
            {n for n in state.owner_chains(base.family, base.chain) if (base.family, n)
             not in stale}
            | {owner_chain(rs.owner, c.base) for c in rs.chains if c.base is base}
        )
        for base in touched
    }
    lines += _rebuild_bases(touched, members)
    lines += [f"delete chain {fam} {TABLE} {name}" for fam, name in stale]
    return "\n".join(lines) + "\n" if lines else ""


def render_remove(owner: str, state: TableState) -> str:
    """The transaction that removes every chain of ``owner`` (and a table left empty)."""
    gone = state.chains_of(owner)
    if not gone:
        return ""
    touched = {_base_of(fam, name) for fam, name in gone}
    members = {
        base: [n for n in state.owner_chains(base.family, base.chain)
               if (base.family, n) not in gone]
        for base in touched
    }
    lines = _rebuild_bases(touched, members)
    lines += [f"delete chain {fam} {TABLE} {name}" for fam, name in gone]
    left = state.owners() - {owner}
    for family in FAMILIES:
        if family in {fam for fam, _ in gone} and not any(
            fam == family for other in left for fam, _ in state.chains_of(other)
        ):
            lines.append(f"delete table {family} {TABLE}")
    return "\n".join(lines) + "\n"


def _base_of(family: str, name: str) -> Base:
    suffix = name.rsplit(".", 1)[1]
    for base in Base:
        if base.family == family and base.chain == suffix:
            return base
    raise ValueError(f"chain {family} {name} hangs on no known base chain")


def problems(rs: Ruleset, state: TableState) -> list[str]:
    """Every way the kernel differs from ``rs`` (an empty list: all in place)."""
    found = []
    wanted = rs.chain_names()
    for (fam, name), chain in sorted(wanted.items()):
        base = state.chain(fam, chain.base.chain)
        if base is None or base.hook != chain.base.hook:
            found.append(f"firewall base chain {fam} {TABLE} {chain.base.chain} is missing "
                         "or not hooked as berth made it")
        elif base.jumps.count(name) != 1:
            found.append(f"firewall chain {fam} {TABLE} {chain.base.chain} does not jump "
                         f"to {name} exactly once")
        have = state.chain(fam, name)
        if have is None:
            found.append(f"firewall chain {fam} {TABLE} {name} is missing")
            continue
        want_tags = tuple(rule_tag(r) for r in chain.rules)
        if have.tags != want_tags or have.rules != len(chain.rules):
            missing = len([t for t in want_tags if t not in have.tags])
            found.append(f"firewall chain {fam} {TABLE} {name} differs: {have.rules} rules, "
                         f"want {len(chain.rules)} ({missing} missing)")
    for fam, name in state.chains_of(rs.owner):
        if (fam, name) not in wanted:
            found.append(f"firewall chain {fam} {TABLE} {name} should not exist")
    return found
