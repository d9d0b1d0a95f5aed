"""Fixtures for tests that run inside qemu VMs with Debian's kernel (tests/vm/machine.py).

``vm_image`` builds (or finds cached) the image with scripts/vm-image.sh; a failed build or a
missing qemu FAILS the test, never skips it. ``vms`` boots the module's ``VM_COUNT`` VMs
(default 1) once per test module, copies this working tree to /root/berth in each, and
yields them in order (vm1, vm2, ...); ``vm.run(cmd)`` / ``vm.check(cmd)`` run a shell
command as root. Everything is torn down after the module, even when a test or the boot
fails; when anything failed, the VMs' serial console logs are kept and their directory
named on stderr.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vm.machine import Vm, VmCluster, VmImage, build_image

VENV_PYTHON = "/opt/berth/venv/bin/python"   # made by scripts/vm-image.sh
SOURCE = "/root/berth"


@pytest.fixture(scope="session")
def vm_image() -> VmImage:
    return build_image()


@pytest.fixture(scope="module")
def vms(request: pytest.FixtureRequest, vm_image: VmImage) -> Iterator[list[Vm]]:
    count = int(getattr(request.module, "VM_COUNT", 1))
    failed_before = request.session.testsfailed
    cluster = VmCluster(vm_image, count)
    clean = False
    try:
        machines = cluster.boot()
        for vm in machines:
            print(f"{vm.name} answered SSH {vm.booted_in:.0f}s after qemu started")
        cluster.put_source(SOURCE)
        yield machines
        clean = request.session.testsfailed == failed_before
    finally:
        cluster.destroy(keep_logs=not clean)
