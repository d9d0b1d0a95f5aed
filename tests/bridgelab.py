"""Simulated hosts and containers as network namespaces, for the bridge driver's tests.

``world()`` builds, under a random prefix ``bt-br-<hex>``:

* ``h``: the node. Its ``eth0`` (the underlay, ``<net>.1/24``) is a veth to
* ``o``: another machine on the same LAN (``<net>.2/24``), which is also the "outside"
  that egress reaches. It has no route to any container subnet, so an answer to a
  container can only come back if the node masqueraded it.

Containers are bare namespaces (``container(name)``) that the driver under test wires.
Every process a test starts here is tracked by PID and killed, and every namespace is
deleted, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests import needs

WHOAMI = str(Path(__file__).with_name("whoami.py"))
BUSYBOX = "/bin/busybox"


def sh(*argv: str, check: bool = True, stdin: str | None = None
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30,
                          input=stdin)


@dataclass
class World:
    prefix: str
    net: str                              # e.g. "10.250.17"
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    @property
    def host_ip(self) -> str:
        return f"{self.net}.1"

    @property
    def outside_ip(self) -> str:
        return f"{self.net}.2"

    def add_ns(self, role: str) -> str:
        sh("ip", "netns", "add", self.ns(role))
        self.namespaces.append(self.ns(role))
        return self.path(role)

    def drop_ns(self, role: str) -> None:
        """Delete a namespace now, as when a container dies (its veth goes with it)."""
        sh("ip", "netns", "del", self.ns(role))
        self.namespaces.remove(self.ns(role))

    @contextlib.contextmanager
    def nft_monitor(self, role: str = "h") -> Iterator[list[str]]:
        """Collect every nftables change event in ``role`` while the block runs."""
        proc = subprocess.Popen(["nsenter", f"--net={self.path(role)}", "nft", "monitor"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        events: list[str] = []
        try:
            time.sleep(0.5)   # subscribed before the block starts changing anything
            yield events
            time.sleep(0.5)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
            events.extend(out.splitlines())

    def container(self, role: str) -> str:
        """A fresh, empty netns for a container (loopback down, as the kernel makes it)."""
        return self.add_ns(role)

    def run(self, role: str, *argv: str, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return sh("nsenter", f"--net={self.path(role)}", *argv, check=check, stdin=stdin)

    # -- traffic ------------------------------------------------------------------------

    def ping(self, role: str, ip: str) -> bool:
        return self.run(role, BUSYBOX, "ping", "-c1", "-W2", ip, check=False).returncode == 0

    def serve(self, role: str, port: int, proto: str = "tcp") -> None:
        """Start a whoami server in ``role`` and wait until it listens."""
        proc = subprocess.Popen(
            ["nsenter", f"--net={self.path(role)}", sys.executable, WHOAMI, "serve", proto,
             str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"whoami server in {role} exited {proc.returncode}")
            if self.run(role, "ss", flag, f"sport = :{port}").stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"whoami server in {role} not listening on {port}")

    def ask(self, role: str, ip: str, port: int, proto: str = "tcp") -> str | None:
        """The source address the server at ip:port saw us come from; None if no answer."""
        done = self.run(role, sys.executable, WHOAMI, "ask", proto, ip, str(port), check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    # -- inspection ---------------------------------------------------------------------

    def links(self, role: str) -> list[str]:
        out = json.loads(sh("ip", "-j", "-n", self.ns(role), "link", "show").stdout)
        return [link["ifname"] for link in out]

    def ruleset(self) -> str:
        """The host's whole nftables rule set, without counters (-s)."""
        return self.run("h", "nft", "-s", "list", "ruleset").stdout

    def iptables(self, chain: str = "FORWARD") -> str:
        return self.run("h", "iptables", "-w", "5", "-S", chain, check=False).stdout

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def world() -> Iterator[World]:
    needs.root()
    for tool, package in (("nft", "nftables"), ("iptables", "iptables"), ("nsenter",
                          "util-linux"), ("ss", "iproute2")):
        needs.tool(tool, package)
    w = World(f"bt-br-{secrets.token_hex(3)}", f"10.250.{secrets.randbelow(200) + 20}")
    try:
        for role in ("h", "o"):
            w.add_ns(role)
            sh("ip", "-n", w.ns(role), "link", "set", "lo", "up")
        sh("ip", "-n", w.ns("h"), "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", w.ns("o"))
        for role, ip in (("h", w.host_ip), ("o", w.outside_ip)):
            sh("ip", "-n", w.ns(role), "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", w.ns(role), "link", "set", "eth0", "up")
        yield w
    finally:
        w.close()
