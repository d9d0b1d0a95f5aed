"""Run nft, iptables and sysctl in the host's network namespace.

Called by netplugins.firewall.firewall and .docker only. The real agent already lives in
its host's netns and runs the tools directly; tests (``HostContext.host_netns`` set) go
through ``nsenter --net=PATH``. Tools are forked and exec'd by asyncio, which is safe next
to gRPC threads (a bare fork of the agent is not; see berth.netns).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass

from netplugins.errors import KernelError

NETNS_RUN_DIR = "/run/netns"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class HostCommands:
    """Runs commands in ``netns`` (None: this process's own network namespace)."""

    netns: str | None = None

    def argv(self, argv: Sequence[str]) -> list[str]:
        if self.netns is None:
            return list(argv)
        path = self.netns if "/" in self.netns else os.path.join(NETNS_RUN_DIR, self.netns)
        return ["nsenter", f"--net={path}", *argv]

    async def run(self, argv: Sequence[str], stdin: str | None = None) -> Done:
        full = self.argv(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise KernelError(f"{full[0]} is not installed: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(TIMEOUT):
                out, err = await proc.communicate(
                    stdin.encode() if stdin is not None else None)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise KernelError(f"{' '.join(argv)}: no answer within {TIMEOUT:.0f} s") from exc
        if self.netns is not None and proc.returncode != 0 and err.startswith(b"nsenter:"):
            # nsenter's own failures: the tool is missing, or the netns is gone.
            text = err.decode(errors="replace").strip()
            if "failed to execute" in text:
                raise KernelError(f"{argv[0]} is not installed: {text}")
            raise KernelError(f"{' '.join(full)}: {text}")
        return Done(proc.returncode or 0, out.decode(errors="replace"),
                    err.decode(errors="replace"))

    async def check(self, argv: Sequence[str], stdin: str | None = None) -> str:
        """Run; its stdout, or KernelError naming the command and its stderr."""
        done = await self.run(argv, stdin)
        if not done.ok:
            raise KernelError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return done.stdout
