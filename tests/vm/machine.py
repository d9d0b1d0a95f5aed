"""qemu VMs for tests that need a kernel this machine does not have (802.1q, and later the
deployment tests): Debian 12 with Debian's own kernel, booted from the image that
scripts/vm-image.sh builds. tests/vm/conftest.py turns this into fixtures.

Shape. ``VmCluster`` makes one network namespace, ``bvm-<random>``, holding two Linux
bridges: ``br0``, the management LAN (10.231.0.1/24 in the namespace, VM n at 10.231.0.1n,
its eth0) and ``br1``, a trunk with no address (every VM's eth1, up, no address: the
VLAN tests tag frames on it). Each VM NIC is a tap on one of them, and qemu runs inside the
namespace (``nsenter --net``) so it can open its taps. Nothing of this touches the root
namespace: no veth out, no route, no NAT, so the VMs reach each other and the namespace,
nothing else. SSH to the VMs runs from inside the namespace too.

Boot. qemu with TCG (this machine has no usable KVM), ``-kernel``/``-initrd`` from the
image, root on a copy-on-write qcow2 overlay per VM, so the cached image is never written
and every cluster starts from the same clean disk. Each VM's serial console goes to a file.
qemu carries ``setpriv --pdeathsig KILL``: if the test process dies, its VMs die with it.

Teardown. ``destroy`` kills the qemu processes it started, by PID, deletes the namespace
with its taps and bridges, and removes the overlays; with ``keep_logs`` it keeps the
directory with the console logs and names it on stderr.
"""

from __future__ import annotations

import io
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import needs

REPO = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO / "scripts" / "vm-image.sh"
MGMT = "10.231.0"
BOOT_TIMEOUT = 900.0        # TCG on a shared 2-core machine; 45-75 s when it is idle
MEMORY_MB = 768


@dataclass(frozen=True)
class VmImage:
    """A directory scripts/vm-image.sh made (see its header for the files)."""

    dir: Path

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"


def build_image() -> VmImage:
    """Run scripts/vm-image.sh (instant when its image is cached); fail the test if it fails."""
    needs.root()
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                          ("debootstrap", "debootstrap"), ("ssh", "openssh-client"),
                          ("setpriv", "util-linux")):
        needs.tool(tool, package)
    done = subprocess.run(["sh", str(IMAGE_SCRIPT)], capture_output=True, text=True,
                          timeout=3600, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/vm-image.sh failed (exit {done.returncode}):\n"
                    f"{done.stderr[-3000:]}", pytrace=False)
    image = VmImage(Path(done.stdout.split()[-1]))
    for path in (image.rootfs, image.kernel, image.initrd, image.key):
        if not path.is_file():
            pytest.fail(f"scripts/vm-image.sh made no {path}", pytrace=False)
    return image


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60)


@dataclass
class Switch:
    """The namespace the VMs' NICs are plugged into (br0: management, br1: trunk)."""

    netns: str
    made: bool = False

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def gateway(self) -> str:
        return f"{MGMT}.1"

    def create(self) -> None:
        sh("ip", "netns", "add", self.netns)
        self.made = True
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        for bridge in ("br0", "br1"):
            sh("ip", "-n", self.netns, "link", "add", bridge, "type", "bridge")
            sh("ip", "-n", self.netns, "link", "set", bridge, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.gateway}/24", "dev", "br0")

    def tap(self, name: str, bridge: str) -> None:
        sh("ip", "-n", self.netns, "tuntap", "add", "dev", name, "mode", "tap")
        sh("ip", "-n", self.netns, "link", "set", name, "master", bridge, "up")

    def enter(self, *argv: str) -> list[str]:
        """argv run inside the namespace (nsenter execs it: same PID)."""
        return ["nsenter", f"--net={self.path}", *argv]

    def delete(self) -> None:
        if self.made:
            sh("ip", "netns", "del", self.netns, check=False)
            self.made = False


@dataclass
class Vm:
    """One qemu VM: ``run`` a shell command in it as root over SSH."""

    name: str                  # vm1, vm2, ...: also its hostname
    index: int
    image: VmImage
    switch: Switch
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    booted_in: float = 0.0     # seconds from qemu start to SSH answering

    @property
    def ip(self) -> str:
        return f"{MGMT}.{10 + self.index}"

    @property
    def console(self) -> Path:
        return self.workdir / f"{self.name}.console.log"

    @property
    def overlay(self) -> Path:
        return self.workdir / f"{self.name}.qcow2"

    def tap(self, nic: int) -> str:
        """The namespace-side name of NIC ``nic`` (0: eth0 on br0, 1: eth1 on br1)."""
        return f"{self.name}e{nic}"

    def start(self) -> None:
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.rootfs),
           "-F", "qcow2", str(self.overlay))
        nics: list[str] = []
        for nic, bridge in enumerate(("br0", "br1")):
            self.switch.tap(self.tap(nic), bridge)
            mac = f"52:54:00:{secrets.token_hex(1)}:{nic:02x}:{self.index:02x}"
            nics += ["-netdev", f"tap,id=n{nic},ifname={self.tap(nic)},script=no,downscript=no",
                     "-device", f"virtio-net-pci,netdev=n{nic},mac={mac},romfile="]
        append = (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=5 "
                  f"systemd.hostname={self.name} berth.eth0={self.ip}/24 berth.eth1=up")
        argv = self.switch.enter(
            "setpriv", "--pdeathsig", "KILL",
            "qemu-system-x86_64", "-name", self.name, "-accel", "tcg", "-cpu", "max",
            "-smp", "1", "-m", str(MEMORY_MB), "-nodefaults", "-display", "none",
            "-no-reboot", "-serial", f"file:{self.console}",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", append,
            "-drive", f"file={self.overlay},if=virtio,format=qcow2",
            "-device", "virtio-rng-pci", *nics)
        with (self.workdir / f"{self.name}.qemu.log").open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def ssh_argv(self, command: str) -> list[str]:
        return self.switch.enter(
            "ssh", "-F", "/dev/null", "-i", str(self.image.key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{self.ip}", command)

    def run(self, command: str, *, stdin: bytes | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``command`` in the VM's root shell; its exit status, stdout and stderr."""
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

    def answers(self) -> bool:
        return self.run("true", timeout=30).returncode == 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Kill this VM's qemu by PID (it has nothing to save: the overlay is thrown away)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"qemu {self.proc.pid} ({self.name}) did not exit after SIGKILL",
                  file=sys.stderr)
        self.proc = None


def source_tarball(root: Path = REPO) -> bytes:
    """The working tree's files as git sees them (tracked and new, not ignored), with the
    uncommitted changes: what the VM must run is what is on disk here."""
    names = sh("git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
               "--exclude-standard").stdout.split("\0")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(n for n in names if n):
            if (root / name).is_file():
                tar.add(root / name, arcname=name, recursive=False)
    return buf.getvalue()


@dataclass
class VmCluster:
    """``count`` VMs on one switch namespace; ``boot`` starts them all and waits for SSH."""

    image: VmImage
    count: int
    switch: Switch = field(init=False)
    workdir: Path = field(init=False)
    vms: list[Vm] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3)
        self.switch = Switch(f"bvm-{tag}")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"berth-vm-{tag}-"))

    def boot(self) -> list[Vm]:
        self.switch.create()
        self.vms = [Vm(f"vm{i}", i, self.image, self.switch, self.workdir)
                    for i in range(1, self.count + 1)]
        started = time.monotonic()
        for vm in self.vms:
            vm.start()
        waiting = list(self.vms)
        while waiting:
            for vm in list(waiting):
                if not vm.alive():
                    pytest.fail(f"{vm.name}: qemu exited during boot; console:\n"
                                f"{vm.console_tail()}\nqemu:\n{self._qemu_log(vm)}",
                                pytrace=False)
                if vm.answers():
                    vm.booted_in = time.monotonic() - started
                    waiting.remove(vm)
            if waiting and time.monotonic() - started > BOOT_TIMEOUT:
                vm = waiting[0]
                pytest.fail(f"{vm.name}: no SSH after {BOOT_TIMEOUT:.0f}s; console:\n"
                            f"{vm.console_tail()}", pytrace=False)
            if waiting:
                time.sleep(2)
        return self.vms

    def _qemu_log(self, vm: Vm) -> str:
        try:
            return (self.workdir / f"{vm.name}.qemu.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no qemu log)"

    def put_source(self, dest: str = "/root/berth") -> None:
        """Copy the working tree into every VM at ``dest`` (the VMs have no network)."""
        blob = source_tarball()
        for vm in self.vms:
            done = vm.run(f"rm -rf {dest} && mkdir -p {dest} && tar -xzf - -C {dest}",
                          stdin=blob)
            assert done.returncode == 0, f"{vm.name}: copying the source failed: {done.stderr}"

    def destroy(self, *, keep_logs: bool) -> None:
        """Kill every VM, delete the namespace and the overlays; keep the console logs if
        asked. Each step runs even if one before it failed."""
        for vm in self.vms:
            vm.stop()
        self.switch.delete()
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for overlay in self.workdir.glob("*.qcow2"):
            overlay.unlink(missing_ok=True)
        print(f"\nVM console logs kept in {self.workdir}", file=sys.stderr)
