"""Living next to Docker: accepts for berth's interfaces when iptables' FORWARD drops.

Called by netplugins.firewall.firewall when an owner's Ruleset names ``accept_ifaces``.

Docker sets the policy of iptables' ``filter FORWARD`` chain to DROP. With iptables-nft
that chain is an nftables base chain of its own (``table ip filter``), and a packet must be
accepted by every base chain on a hook: an accept in ``table ip berth`` cannot override a
drop there. So where that policy is DROP, berth inserts, for each of its interfaces,
``-i IF -j ACCEPT`` and ``-o IF -j ACCEPT`` tagged ``-m comment --comment berth:<owner>``,
into ``DOCKER-USER`` when it exists (Docker's chain for the user's rules, jumped to first),
else at the top of FORWARD. These accepts only get packets past Docker's policy: berth's
own forward chains still drop what they must (isolation, internal networks, unsolicited
inbound). On removal exactly the rules with the owner's comment go, in either chain, and
nothing else in iptables is read for meaning or touched.

We call ``iptables`` as installed, the same alternative (nft or legacy) Docker itself
calls, so we see and edit the rule set Docker wrote. Without iptables there is no Docker
policy to live with, and nothing is done.
"""

from __future__ import annotations

import logging
import shlex

from netplugins.errors import KernelError
from netplugins.firewall.command import HostCommands

log = logging.getLogger(__name__)

DOCKER_USER = "DOCKER-USER"
FORWARD = "FORWARD"


def comment(owner: str) -> str:
    return f"berth:{owner}"


def accept_specs(owner: str, ifaces: tuple[str, ...]) -> list[list[str]]:
    """The rule specs (without chain) berth keeps for ``owner``'s interfaces."""
    specs = []
    for iface in ifaces:
        for flag in ("-i", "-o"):
            specs.append([flag, iface, "-m", "comment", "--comment", comment(owner),
                          "-j", "ACCEPT"])
    return specs


def owned_lines(listing: str, chain: str, owner: str) -> list[list[str]]:
    """Specs of the rules in ``iptables -S CHAIN`` output that carry exactly our comment."""
    found = []
    for line in listing.splitlines():
        words = shlex.split(line)
        if words[:2] != ["-A", chain]:
            continue
        spec = words[2:]
        for i, word in enumerate(spec[:-1]):
            if word == "--comment" and spec[i + 1] == comment(owner):
                found.append(spec)
                break
    return found


class DockerForward:
    """The iptables FORWARD side of one host netns."""

    def __init__(self, commands: HostCommands, iptables: str = "iptables") -> None:
        self._cmd = commands
        self._iptables = iptables
        self._absent_logged = False

    async def _ipt(self, *args: str) -> tuple[int, str, str]:
        try:
            done = await self._cmd.run([self._iptables, "-w", "5", *args])
        except KernelError as exc:
            if "is not installed" not in str(exc):
                raise
            if not self._absent_logged:
                log.info("%s is not installed: no iptables FORWARD policy to live with", exc)
                self._absent_logged = True
            return (-1, "", "")
        return done.returncode, done.stdout, done.stderr

    async def policy_drops(self) -> bool:
        rc, out, err = await self._ipt("-S", FORWARD)
        if rc < 0:
            return False
        if rc != 0:
            raise KernelError(f"{self._iptables} -S {FORWARD} failed: {err.strip()}")
        return any(line.split()[:3] == ["-P", FORWARD, "DROP"] for line in out.splitlines())

    async def _chain(self) -> str:
        rc, _, _ = await self._ipt("-S", DOCKER_USER)
        return DOCKER_USER if rc == 0 else FORWARD

    async def _has(self, spec: list[str]) -> bool:
        for chain in (DOCKER_USER, FORWARD):
            rc, _, _ = await self._ipt("-C", chain, *spec)
            if rc == 0:
                return True
        return False

    async def missing(self, owner: str, ifaces: tuple[str, ...]) -> list[str]:
        """The accepts that should be there and are not, in words (none unless DROP)."""
        if not ifaces or not await self.policy_drops():
            return []
        return [f"iptables FORWARD drops and the accept {' '.join(spec[:2])} "
                f"({comment(owner)}) is missing"
                for spec in accept_specs(owner, ifaces) if not await self._has(spec)]

    async def ensure(self, owner: str, ifaces: tuple[str, ...]) -> list[str]:
        """Insert the missing accepts when FORWARD drops; return the chain:specs added."""
        if not ifaces or not await self.policy_drops():
            return []
        chain, added = await self._chain(), []
        for spec in accept_specs(owner, ifaces):
            if await self._has(spec):
                continue
            rc, _, err = await self._ipt("-I", chain, "1", *spec)
            if rc != 0:
                raise KernelError(f"{self._iptables} -I {chain}: {err.strip()}")
            added.append(f"{chain}: {' '.join(spec[:2])}")
        return added

    async def remove(self, owner: str) -> int:
        """Delete every rule commented ``berth:<owner>`` in DOCKER-USER and FORWARD."""
        removed = 0
        for chain in (DOCKER_USER, FORWARD):
            rc, out, _ = await self._ipt("-S", chain)
            if rc != 0:
                continue
            for spec in owned_lines(out, chain, owner):
                rc, _, err = await self._ipt("-D", chain, *spec)
                if rc != 0:
                    raise KernelError(f"{self._iptables} -D {chain}: {err.strip()}")
                removed += 1
        return removed
