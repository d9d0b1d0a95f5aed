"""Which qemu accelerator the VMs use: KVM only after a probe boot succeeds, else TCG.

``BERTH_VM_ACCEL`` decides:

- unset or ``auto``: probe once per pytest session (the answer is cached) and use KVM if
  the probe VM booted, TCG if not;
- ``kvm``: probe, and fail the test with the probe's reason if KVM cannot boot the image;
- ``tcg``: no probe, TCG.

The probe boots the image's kernel under ``-accel kvm -cpu host`` with no NIC, its disk in
snapshot mode, until systemd on the real root reaches the multi-user target (a few seconds
under KVM). A broken KVM shows quickly: on this machine ``/dev/kvm`` is ``kvm_pvm``, where
Debian's kernel crashes in early boot, and ``panic=5`` with ``-no-reboot`` makes qemu exit;
a probe that has not booted after ``PROBE_TIMEOUT`` counts as failed too. The choice and its
reason are printed on stderr, where a CI log shows them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.vm.machine import VmImage

PROBE_TIMEOUT = 60.0
BOOTED = "Multi-User System"          # systemd: "Reached target multi-user.target - ..."


@dataclass(frozen=True)
class Accel:
    """What qemu gets: the accelerator, the CPU model and how many vCPUs."""

    name: str                          # "kvm" or "tcg"
    reason: str

    @property
    def argv(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host", "-smp", "2"]
        # qemu64 (x86-64 baseline, as the Vagrantfile's TCG machines): with "max" the guest's
        # libraries take AVX paths that TCG emulates slowly.
        return ["-accel", "tcg", "-cpu", "qemu64", "-smp", "1"]

    @property
    def slow(self) -> bool:
        return self.name == "tcg"


_chosen: Accel | None = None


def probe_kvm(image: VmImage, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if a KVM VM boots ``image`` to systemd's multi-user target, else why not."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="berth-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = ["setpriv", "--pdeathsig", "KILL", "qemu-system-x86_64", "-name", "kvm-probe",
                "-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", "512", "-nodefaults",
                "-display", "none", "-no-reboot", "-serial", f"file:{console}",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=5 "
                           "systemd.hostname=kvm-probe",
                "-drive", f"file={image.rootfs},if=virtio,format=qcow2,snapshot=on"]
        started = time.monotonic()
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) as qemu:
            try:
                while time.monotonic() - started < timeout:
                    text = console.read_text(errors="replace") if console.exists() else ""
                    if BOOTED in text:
                        return None
                    if qemu.poll() is not None:
                        said = (qemu.stdout.read() if qemu.stdout else b"").decode(
                            errors="replace").strip()
                        last = [line for line in text.splitlines() if line.strip()][-3:]
                        return (f"the probe VM exited after {time.monotonic() - started:.0f}s"
                                f" (exit {qemu.returncode}): "
                                + " | ".join([said, *last] if said else last)[-600:])
                    time.sleep(0.5)
                return f"the probe VM did not boot within {timeout:.0f}s"
            finally:
                if qemu.poll() is None:
                    qemu.kill()
                qemu.wait(timeout=30)


def choose(image: VmImage) -> Accel:
    """The accelerator for this session's VMs (probed once, then cached)."""
    global _chosen
    if _chosen is not None:
        return _chosen
    wanted = os.environ.get("BERTH_VM_ACCEL", "auto").strip().lower() or "auto"
    if wanted not in ("auto", "kvm", "tcg"):
        pytest.fail(f"BERTH_VM_ACCEL={wanted}: expected auto, kvm or tcg", pytrace=False)
    if wanted == "tcg":
        chosen = Accel("tcg", "BERTH_VM_ACCEL=tcg")
    else:
        started = time.monotonic()
        failed = probe_kvm(image)
        took = time.monotonic() - started
        if failed is None:
            chosen = Accel("kvm", f"a KVM probe VM booted in {took:.0f}s")
        elif wanted == "kvm":
            pytest.fail(f"BERTH_VM_ACCEL=kvm, but KVM cannot boot the VM image: {failed}",
                        pytrace=False)
        else:
            chosen = Accel("tcg", f"KVM probe failed in {took:.0f}s: {failed}")
    print(f"\nqemu accelerator: {chosen.name} ({chosen.reason})", file=sys.__stderr__,
          flush=True)
    _chosen = chosen
    return chosen
