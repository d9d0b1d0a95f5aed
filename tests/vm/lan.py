"""What the two kinds of test machine share: the namespace they are plugged into, and a root
shell over SSH.

``Lan`` is one network namespace holding Linux bridges: ``br0`` with the control side's
address (``<subnet>.1/24``), where SSH, ansible-playbook and clusterctl run, and any other
bridges without an address (the VLAN tests' trunk). Nothing of it touches the root
namespace: no veth out, no route, no NAT, so the machines reach each other and the
namespace, nothing else. tests/vm/machine.py plugs qemu taps into it, tests/deploy/machines.py
nspawn veths.

``SshMachine`` is one machine at ``<subnet>.(10 + index)`` on br0: ``run``/``check`` a shell
command in it as root, ``console_tail`` for failure messages. Both kinds, and
tests/deploy/control.py's ``Deployment`` (which works over either), use only this.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Lan:
    """A namespace with bridges: br0 (the control side, ``<subnet>.1/24``) and ``extra``."""

    netns: str
    subnet: str                               # the first three octets, e.g. "10.231.0"
    extra: tuple[str, ...] = ()               # more bridges, with no address
    made: bool = False

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        self.made = True
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        for bridge in ("br0", *self.extra):
            sh("ip", "-n", self.netns, "link", "add", bridge, "type", "bridge")
            sh("ip", "-n", self.netns, "link", "set", bridge, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.gateway}/24", "dev", "br0")

    def tap(self, name: str, bridge: str) -> None:
        """A tap device ``name`` on ``bridge`` (for qemu, which runs in the namespace)."""
        sh("ip", "-n", self.netns, "tuntap", "add", "dev", name, "mode", "tap")
        self.plug(name, bridge)

    def plug(self, name: str, bridge: str = "br0") -> bool:
        """Put the existing link ``name`` on ``bridge`` and up; False if it is not there yet."""
        done = sh("ip", "-n", self.netns, "link", "set", name, "master", bridge, "up",
                  check=False)
        return done.returncode == 0

    def enter(self, *argv: str) -> list[str]:
        """argv run inside the namespace (nsenter execs it: same PID)."""
        return ["nsenter", f"--net={self.path}", *argv]

    def delete(self) -> None:
        if self.made:
            sh("ip", "netns", "del", self.netns, check=False)
            self.made = False


@dataclass
class SshMachine:
    """A machine on a ``Lan``'s br0, reached by SSH as root with ``key``."""

    name: str
    index: int
    lan: Lan
    key: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    booted_in: float = field(default=0.0, init=False)   # seconds from start to answering

    @property
    def ip(self) -> str:
        return f"{self.lan.subnet}.{10 + self.index}"

    @property
    def console(self) -> Path:
        raise NotImplementedError

    def ssh_argv(self, command: str) -> list[str]:
        return self.lan.enter(
            "ssh", "-F", "/dev/null", "-i", str(self.key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", f"root@{self.ip}", command)

    def run(self, command: str, *, stdin: bytes | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``command`` in the machine's root shell; its exit status, stdout and stderr."""
        done = subprocess.run(self.ssh_argv(command), input=stdin, capture_output=True,
                              timeout=timeout, check=False)
        return subprocess.CompletedProcess(done.args, done.returncode,
                                           done.stdout.decode(errors="replace"),
                                           done.stderr.decode(errors="replace"))

    def check(self, command: str, *, timeout: float = 600) -> str:
        """stdout of ``command``; an AssertionError with its output if it fails."""
        done = self.run(command, timeout=timeout)
        assert done.returncode == 0, (
            f"{self.name}: `{command}` exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}")
        return done.stdout

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])
