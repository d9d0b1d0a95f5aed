"""qemu VMs for tests that need a kernel this machine does not have (802.1q, and later the
deployment tests): Debian 12 with Debian's own kernel, booted from the image that
scripts/vm-image.sh builds. tests/vm/conftest.py turns this into fixtures.

Shape. ``VmCluster`` makes one network namespace, ``bvm-<random>`` (a ``Lan``,
tests/vm/lan.py), holding ``br0``, the management LAN (10.231.0.1/24 in the namespace, VM n
at 10.231.0.1n, its eth0) and, with ``trunk``, ``br1``, a bridge with no address (every VM's
eth1, up, no address: the VLAN tests tag frames on it). Each VM NIC is a tap on one of
them, and qemu runs inside the namespace (``nsenter --net``) so it can open its taps. SSH
to the VMs runs from inside the namespace too (``SshMachine``, shared with the nspawn
machines of tests/deploy).

Boot. qemu with KVM if a probe boot succeeded, else TCG (tests/vm/accel.py),
``-kernel``/``-initrd`` from the image, root on a copy-on-write qcow2 overlay per VM, so
the cached image is never written and every cluster starts from the same clean disk. Each
VM's serial console goes to a file.
qemu carries ``setpriv --pdeathsig KILL``: if the test process dies, its VMs die with it.

Teardown. ``destroy`` kills the qemu processes it started, by PID, deletes the namespace
with its taps and bridges, and removes the overlays; with ``keep_logs`` it keeps the
directory with the console logs and names it on stderr.
"""

from __future__ import annotations

import io
import os
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
from tests.vm.accel import Accel, choose
from tests.vm.lan import Lan, SshMachine, sh

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


@dataclass
class Vm(SshMachine):
    """One qemu VM: ``run`` a shell command in it as root over SSH (tests/vm/lan.py)."""

    image: VmImage = field(kw_only=True)
    workdir: Path = field(kw_only=True)
    accel: Accel = field(kw_only=True)
    memory_mb: int = field(default=MEMORY_MB, kw_only=True)

    @property
    def switch(self) -> Lan:
        return self.lan

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
        for nic, bridge in enumerate(("br0", *self.lan.extra)):
            self.lan.tap(self.tap(nic), bridge)
            mac = f"52:54:00:{secrets.token_hex(1)}:{nic:02x}:{self.index:02x}"
            nics += ["-netdev", f"tap,id=n{nic},ifname={self.tap(nic)},script=no,downscript=no",
                     "-device", f"virtio-net-pci,netdev=n{nic},mac={mac},romfile="]
        append = (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=5 "
                  f"systemd.hostname={self.name} berth.eth0={self.ip}/24")
        if self.lan.extra:
            append += " berth.eth1=up"
        argv = self.lan.enter(
            "setpriv", "--pdeathsig", "KILL",
            "qemu-system-x86_64", "-name", self.name, *self.accel.argv,
            "-m", str(self.memory_mb), "-nodefaults", "-display", "none",
            "-no-reboot", "-serial", f"file:{self.console}",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", append,
            "-drive", f"file={self.overlay},if=virtio,format=qcow2",
            "-device", "virtio-rng-pci", *nics)
        with (self.workdir / f"{self.name}.qemu.log").open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        return self.run("true", timeout=30).returncode == 0

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
    """``count`` VMs on one namespace; ``boot`` starts them all and waits for SSH.

    The VMs are ``<prefix>1`` .. ``<prefix>N`` (also their hostnames) at
    ``<subnet>.11`` .. on br0; with ``trunk`` each also has an eth1 on the bridge br1.
    ``machines``, ``key`` and ``enter`` are what tests/deploy/control.py's ``Deployment``
    uses, the same as tests/deploy/machines.py's ``MachineSet`` offers.
    """

    image: VmImage
    count: int
    prefix: str = "vm"
    subnet: str = MGMT
    trunk: bool = True
    memory_mb: int = MEMORY_MB
    switch: Lan = field(init=False)
    workdir: Path = field(init=False)
    accel: Accel = field(init=False)
    vms: list[Vm] = field(default_factory=list)

    def __post_init__(self) -> None:
        # scripts/vm-test.sh names its namespace, to check it is gone afterwards.
        tag = os.environ.get("BERTH_VM_TAG") or secrets.token_hex(3)
        self.switch = Lan(f"bvm-{tag}", self.subnet, ("br1",) if self.trunk else ())
        self.workdir = Path(tempfile.mkdtemp(prefix=f"berth-vm-{tag}-"))

    @property
    def machines(self) -> list[Vm]:
        return self.vms

    @property
    def key(self) -> Path:
        return self.image.key

    @property
    def kind(self) -> str:
        return f"qemu VMs ({self.accel.name})"

    def enter(self, *argv: str) -> list[str]:
        return self.switch.enter(*argv)

    def boot(self) -> list[Vm]:
        self.accel = choose(self.image)
        self.switch.create()
        self.vms = [Vm(f"{self.prefix}{i}", i, self.switch, self.image.key, image=self.image,
                       workdir=self.workdir, accel=self.accel, memory_mb=self.memory_mb)
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
            try:
                vm.stop()
            except Exception as exc:  # the other VMs must still go
                print(f"{vm.name}: stop failed: {exc}", file=sys.stderr)
        self.switch.delete()
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for overlay in self.workdir.glob("*.qcow2"):
            overlay.unlink(missing_ok=True)
        print(f"\nVM console logs kept in {self.workdir}", file=sys.stderr)
