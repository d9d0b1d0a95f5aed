"""systemd-nspawn machines for the deployment tests: Debian 12 with systemd as PID 1, booted
from the debootstrap tree scripts/vm-image.sh keeps (the same tree qemu boots as an image).

Shape. ``MachineSet`` makes one network namespace, ``bdp-<random>``, holding a Linux bridge
``br0`` (10.232.0.1/24: the control side, where SSH and ansible-playbook run) and one veth
per machine: nspawn runs inside the namespace with ``--network-veth-extra=nodeNe0:eth0``,
so the host end appears there and goes onto br0, and the machine's end is its eth0
(10.232.0.1N/24, set at boot by berth-net.service from /etc/berth-net.conf). Nothing
touches the root namespace: no veth out, no route, no NAT; the machines reach each other
and the namespace, nothing else.

Root filesystem. Each machine gets an overlayfs: the cached tree is the lower layer and is
never written; the upper layer (this machine's changes) goes away with the machine.
/var/lib/berth is a bind mount of a plain host directory, because the agent mounts each
container's rootfs with overlayfs, and overlayfs refuses an upper layer on overlayfs.

What made nspawn work on this host (hybrid cgroups, v1 controllers), measured:
``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`` (a writable cgroup2 for the machine, with no
controllers, because this host binds them to v1), ``SYSTEMD_SECCOMP=0``,
``--boot --register=no --keep-unit --capability=all``, and moving each nspawn process into
a cgroup of its own first (with ``--keep-unit`` they would share the caller's). runc runs
containers inside the machines.

Teardown. ``destroy`` asks each nspawn (by its PID) to power its machine off, kills it
after a grace period, kills whatever is left in the machine's cgroup (every process in it is
the machine's), removes the cgroups, unmounts the overlays and deletes the namespace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.vm.lan import Lan, SshMachine, sh

LAN = "10.232.0"
BOOT_TIMEOUT = 180.0
UNIFIED = Path("/sys/fs/cgroup/unified")     # this host: cgroup2 beside the v1 controllers
NAMED = Path("/sys/fs/cgroup/systemd")       # and the name=systemd v1 hierarchy


def _cgroup_roots() -> list[Path]:
    """Where a machine's cgroup is made: cgroup2 (unified or pure), and name=systemd."""
    if (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():
        return [Path("/sys/fs/cgroup")]                 # a pure cgroup v2 host
    return [root for root in (UNIFIED, NAMED) if (root / "cgroup.procs").exists()]


def _kill_cgroup_tree(top: Path) -> None:
    """SIGKILL every process under ``top`` (all the machine's), then rmdir it bottom-up."""
    if not top.is_dir():
        return
    for _ in range(50):
        pids = [int(p) for procs in top.rglob("cgroup.procs")
                for p in procs.read_text().split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass
    try:
        top.rmdir()
    except OSError as exc:
        print(f"cgroup {top} not removed: {exc}", file=sys.stderr)


@dataclass
class Machine(SshMachine):
    """One nspawn machine: ``run`` a shell command in it as root over SSH (tests/vm/lan.py)."""

    tree: Path = field(kw_only=True)
    workdir: Path = field(kw_only=True)
    cgroup: str = field(kw_only=True)      # relative cgroup path, the same in each hierarchy
    mounted: bool = field(default=False, init=False)

    @property
    def hostif(self) -> str:
        return f"{self.name}e0"

    @property
    def base(self) -> Path:
        return self.workdir / self.name

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def console(self) -> Path:
        return self.base / "console.log"

    def prepare(self) -> None:
        """The overlay root, with this machine's hostname and address in its upper layer."""
        for sub in ("upper", "work", "root", "state"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={self.tree},upperdir={self.base / 'upper'},workdir={self.base / 'work'}",
           str(self.root))
        self.mounted = True
        (self.root / "etc/hostname").write_text(f"{self.name}\n")
        (self.root / "etc/berth-net.conf").write_text(f"berth.eth0={self.ip}/24\n")
        (self.root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")

    def start(self) -> None:
        for top in _cgroup_roots():
            (top / self.cgroup).mkdir(parents=True, exist_ok=True)
        procs = " ".join(str(top / self.cgroup / "cgroup.procs") for top in _cgroup_roots())
        # The shell moves itself into the machine's cgroups, then becomes nspawn (same PID).
        script = f'for f in {procs}; do echo $$ > "$f"; done; exec "$@"'
        argv = self.lan.enter(
            "setpriv", "--pdeathsig", "KILL",
            "sh", "-c", script, "nspawn",
            "systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
            "--capability=all", f"--machine={self.name}", f"--directory={self.root}",
            f"--network-veth-extra={self.hostif}:eth0", "--console=read-only",
            # The agent's overlayfs rootfs mounts cannot take an upper layer on the
            # machine's own overlay root: its state lives on the host's filesystem.
            f"--bind={self.base / 'state'}:/var/lib/berth")
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", "SYSTEMD_SECCOMP": "0"}
        with self.console.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)

    def plug(self) -> bool:
        """Put the host end of the machine's veth on br0 once nspawn made it."""
        return self.lan.plug(self.hostif)

    def power_off(self) -> None:
        """Ask for an orderly shutdown (SIGTERM to nspawn's PID); ``stop`` waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, deadline: float | None = None) -> None:
        """Power off, SIGKILL if nspawn still runs at DEADLINE (monotonic; 30 s from now by
        default), then kill what is left in the machine's cgroups and unmount its root."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.power_off()
                wait = (time.monotonic() + 30 if deadline is None else deadline) - time.monotonic()
                try:
                    self.proc.wait(timeout=max(wait, 0.1))
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=30)
            self.proc = None
        for top in _cgroup_roots():
            _kill_cgroup_tree(top / self.cgroup)
        if self.mounted:
            done = sh("umount", str(self.root), check=False)
            if done.returncode != 0:
                sh("umount", "-l", str(self.root), check=False)
            self.mounted = False


@dataclass
class MachineSet:
    """``count`` machines on one namespace; ``boot`` starts them and waits for SSH."""

    tree: Path
    key: Path
    count: int
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    kind: str = "nspawn machines"
    workdir: Path = field(init=False)
    lan: Lan = field(init=False)
    machines: list[Machine] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"berth-deploy-{self.tag}-"))
        self.lan = Lan(f"bdp-{self.tag}", LAN)

    @property
    def cgroup_top(self) -> str:
        return f"berth-deploy-{self.tag}"

    def enter(self, *argv: str) -> list[str]:
        return self.lan.enter(*argv)

    def boot(self) -> list[Machine]:
        self.lan.create()
        self.machines = [
            Machine(f"node{i}", i, self.lan, self.key, tree=self.tree, workdir=self.workdir,
                    cgroup=f"{self.cgroup_top}/node{i}")
            for i in range(1, self.count + 1)]
        started = time.monotonic()
        for machine in self.machines:
            machine.prepare()
            machine.start()
        waiting, unplugged = list(self.machines), list(self.machines)
        while waiting:
            for machine in list(waiting):
                if not machine.alive():
                    pytest.fail(f"{machine.name}: systemd-nspawn exited during boot:\n"
                                f"{machine.console_tail()}", pytrace=False)
                if machine in unplugged:
                    if machine.plug():
                        unplugged.remove(machine)
                    continue
                if machine.run("systemctl is-system-running --wait >/dev/null; true",
                               timeout=60).returncode == 0:
                    machine.booted_in = time.monotonic() - started
                    waiting.remove(machine)
            if waiting and time.monotonic() - started > BOOT_TIMEOUT:
                machine = waiting[0]
                pytest.fail(f"{machine.name}: no SSH after {BOOT_TIMEOUT:.0f}s:\n"
                            f"{machine.console_tail()}", pytrace=False)
            if waiting:
                time.sleep(1)
        return self.machines

    def destroy(self, *, keep_logs: bool) -> None:
        """Stop every machine, delete the namespace and the work directory (the console
        logs kept if asked). Each step runs even if one before it failed. The machines shut
        down side by side: one 30 s deadline for all of them."""
        for machine in self.machines:
            machine.power_off()
        deadline = time.monotonic() + 30
        for machine in self.machines:
            try:
                machine.stop(deadline)
            except Exception as exc:  # the other machines must still go
                print(f"{machine.name}: stop failed: {exc}", file=sys.stderr)
        for top in _cgroup_roots():
            _kill_cgroup_tree(top / self.cgroup_top)
        self.lan.delete()
        if any(m.mounted for m in self.machines):
            print(f"overlays still mounted under {self.workdir}", file=sys.stderr)
            return
        if keep_logs:
            for machine in self.machines:
                for sub in ("upper", "work", "root", "state"):
                    shutil.rmtree(machine.base / sub, ignore_errors=True)
            print(f"\nnspawn console logs kept in {self.workdir}", file=sys.stderr)
            return
        shutil.rmtree(self.workdir, ignore_errors=True)
