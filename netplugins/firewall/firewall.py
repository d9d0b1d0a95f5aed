"""Firewall: the node's one gate to its packet filter, shared by every driver.

One per HostContext (the agent has one; a test that simulates an agent restart builds a
new HostContext, hence a new Firewall). Drivers hand it ``Ruleset`` values per owner; see
the package docstring for why this is nftables and how owners, chains and stale owners
work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from netplugins.errors import KernelError
from netplugins.firewall.command import HostCommands
from netplugins.firewall.docker import DockerForward
from netplugins.firewall.nodeports import NodePorts, node_ports_ruleset
from netplugins.firewall.rules import (
    FAMILIES,
    TABLE,
    Ruleset,
    TableState,
    check_owner,
    parse_table,
    problems,
    render_apply,
    render_remove,
)

log = logging.getLogger(__name__)

_NO_TABLE = "No such file or directory"


class Firewall:
    """Applies, checks and removes owners' rules in berth's nftables tables, atomically.

    Every call holds one lock, so read-render-write never interleaves inside the agent.
    ``apply`` also remembers each owner's Ruleset, so ``resync`` can put back what someone
    deleted by hand while this object lives; after a restart the remembered set starts
    empty and drivers re-apply (NetworkHost.ensure) or CHECK what they own.
    """

    def __init__(self, netns: str | None = None, *, nft: str = "nft",
                 iptables: str = "iptables") -> None:
        self.netns = netns
        self._cmd = HostCommands(netns)
        self._nft = nft
        self._docker = DockerForward(self._cmd, iptables)
        self._lock = asyncio.Lock()
        self._desired: dict[str, Ruleset] = {}
        self._node_ports: NodePorts | None = None

    # -- reading ----------------------------------------------------------------------

    async def state(self) -> TableState:
        """Both berth tables as the kernel holds them now."""
        chains = {}
        for family in FAMILIES:
            done = await self._cmd.run([self._nft, "-j", "list", "table", family, TABLE])
            if done.ok:
                chains[family] = parse_table(done.stdout)
            elif _NO_TABLE not in done.stderr:
                raise KernelError(f"{self._nft} list table {family} {TABLE} failed: "
                                  f"{done.stderr.strip()}")
        return TableState(chains)

    async def owners(self) -> frozenset[str]:
        """Every owner with at least one chain in the kernel."""
        return frozenset((await self.state()).owners())

    async def check(self, rs: Ruleset) -> list[str]:
        """What differs between the kernel and ``rs``, in words; [] when all is in place."""
        async with self._lock:
            found = problems(rs, await self.state())
            found += await self._docker.missing(rs.owner, rs.accept_ifaces)
        return found

    async def absent(self, owner: str) -> list[str]:
        """Complaints if ``owner`` still has chains (CHECK of something that should have none)."""
        check_owner(owner)
        async with self._lock:
            state = await self.state()
        return [f"firewall chain {fam} {TABLE} {name} should not exist"
                for fam, name in state.chains_of(owner)]

    # -- writing ----------------------------------------------------------------------

    async def _transaction(self, script: str) -> None:
        if script:
            await self._cmd.check([self._nft, "-f", "-"], stdin=script)

    async def apply(self, rs: Ruleset) -> bool:
        """Make ``rs`` the owner's whole content in one transaction; idempotent.

        Returns whether anything had to change (nothing is written when all is in place).
        """
        async with self._lock:
            return await self._apply(rs)

    async def _apply(self, rs: Ruleset) -> bool:
        state = await self.state()
        differs = bool(problems(rs, state))
        if differs:
            await self._transaction(render_apply(rs, state))
        self._desired[rs.owner] = rs
        added = await self._docker.ensure(rs.owner, rs.accept_ifaces)
        if added:
            log.info("firewall %s: FORWARD drops; accepted %s", rs.owner, ", ".join(added))
        return differs or bool(added)

    async def remove(self, owner: str) -> None:
        """Remove every chain and iptables accept of ``owner``; already gone is fine."""
        check_owner(owner)
        async with self._lock:
            await self._remove(owner)

    async def _remove(self, owner: str) -> None:
        self._desired.pop(owner, None)
        await self._docker.remove(owner)
        await self._transaction(render_remove(owner, await self.state()))

    async def resync(self) -> list[str]:
        """Re-apply each remembered owner whose rules differ; return those owners."""
        repaired = []
        async with self._lock:
            for owner, rs in sorted(self._desired.items()):
                if await self._apply(rs):
                    repaired.append(owner)
        if repaired:
            log.info("firewall: re-applied %s", ", ".join(repaired))
        return repaired

    async def prune(self, prefix: str, alive: Callable[[str], Awaitable[bool]]) -> list[str]:
        """Remove each owner named ``prefix...`` for which ``alive(owner)`` is False.

        ``alive`` runs under the lock, so an owner being applied right now (whose
        liveness fact, say its veth, already exists) is never removed by mistake.
        """
        gone = []
        async with self._lock:
            for owner in sorted((await self.state()).owners()):
                if owner.startswith(prefix) and not await alive(owner):
                    await self._remove(owner)
                    gone.append(owner)
        if gone:
            log.info("firewall: removed stale owners %s", ", ".join(gone))
        return gone

    # -- the node's own ports (nodeports.py) --------------------------------------------

    @property
    def node_ports(self) -> NodePorts | None:
        """The ports closed to containers on this node; None until the agent closed them."""
        return self._node_ports

    async def ensure_node_ports(self, ports: NodePorts) -> bool:
        """Close ``ports`` to containers (owner ``node-ports``); True if anything changed."""
        self._node_ports = ports
        return await self.apply(node_ports_ruleset(ports))

    # -- host settings the rules depend on ----------------------------------------------

    async def ensure_sysctl(self, key: str, value: str) -> bool:
        """Set ``key`` (e.g. net.ipv4.ip_forward) in the host netns; True if it changed."""
        if await self.sysctl(key) == value:
            return False
        await self._cmd.check(["sysctl", "-q", "-w", f"{key}={value}"])
        return True

    async def sysctl(self, key: str) -> str | None:
        """The value of ``key`` in the host netns; None if there is no such key (yet)."""
        done = await self._cmd.run(["sysctl", "-n", key])
        if not done.ok:
            if "No such file" in done.stderr:
                return None
            raise KernelError(f"sysctl -n {key} failed: {done.stderr.strip()}")
        return done.stdout.strip()
