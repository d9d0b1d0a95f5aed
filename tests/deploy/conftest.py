"""Fixtures for the deployment tests: three machines booted from what scripts/vm-image.sh
keeps, and the control side that runs ansible/site.yml and clusterctl against them
(tests/deploy/control.py).

``BERTH_DEPLOY_MACHINES`` picks the kind: ``nspawn`` (the default, and CI's: systemd-nspawn
machines on the cached tree, tests/deploy/machines.py; they boot in seconds and share this
kernel) or ``qemu`` (VMs with Debian's kernel, tests/vm/machine.py, 1536 MiB each, KVM or
TCG as tests/vm/accel.py decides; scripts/vm-test.sh runs them). Under TCG every wait is
``PATIENCE`` times longer.

``deployment`` is module-scoped: the tests of a module share one set of machines, and run
in file order (the playbook from scratch first). Everything is torn down after the module,
even when a test or the boot failed; when anything failed, the consoles are kept and
their directory named on stderr.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import needs
from tests.deploy.control import Deployment, prefetch_wheelhouse
from tests.deploy.machines import MachineSet
from tests.vm.machine import IMAGE_SCRIPT, VmCluster, build_image

MACHINES = 3
VM_MEMORY_MB = 1536          # etcd + controller + agent + a few containers, with room
PATIENCE = 5.0               # TCG runs 15x slower on CPU, 50x at fork and exec
KINDS = ("nspawn", "qemu")


def machine_kind() -> str:
    kind = os.environ.get("BERTH_DEPLOY_MACHINES", "nspawn").strip() or "nspawn"
    if kind not in KINDS:
        pytest.fail(f"BERTH_DEPLOY_MACHINES={kind}: expected nspawn or qemu", pytrace=False)
    return kind


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On qemu VMs a test may take far longer than on nspawn machines."""
    if os.environ.get("BERTH_DEPLOY_MACHINES") == "qemu":
        for item in items:
            if "tests/deploy/" in str(item.path).replace(os.sep, "/"):
                item.add_marker(pytest.mark.timeout(7200))


def _image_dir() -> Path:
    done = subprocess.run(["sh", str(IMAGE_SCRIPT)], capture_output=True, text=True,
                          timeout=3600, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/vm-image.sh failed (exit {done.returncode}):\n"
                    f"{done.stderr[-3000:]}", pytrace=False)
    image = Path(done.stdout.split()[-1])
    for path in (image / "tree" / "sbin" / "init", image / "id_ed25519"):
        if not path.exists():
            pytest.fail(f"scripts/vm-image.sh made no {path}", pytrace=False)
    return image


def fleet(kind: str) -> MachineSet | VmCluster:
    """Three unbooted machines of ``kind``, named node1..node3."""
    if kind == "qemu":
        return VmCluster(build_image(), MACHINES, prefix="node", trunk=False,
                         memory_mb=VM_MEMORY_MB)
    for tool, package in (("systemd-nspawn", "systemd-container"), ("ssh", "openssh-client"),
                          ("setpriv", "util-linux"), ("debootstrap", "debootstrap")):
        needs.tool(tool, package)
    image = _image_dir()
    return MachineSet(image / "tree", image / "id_ed25519", MACHINES)


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    needs.root()
    machines = fleet(machine_kind())
    control = tmp_path_factory.mktemp("control")
    prefetch_wheelhouse(control / "wheelhouse")
    failed_before = request.session.testsfailed
    clean = False
    try:
        started = time.monotonic()
        machines.boot()
        print(f"\n{MACHINES} {machines.kind} booted in {time.monotonic() - started:.0f}s")
        slow = isinstance(machines, VmCluster) and machines.accel.slow
        yield Deployment(machines, control, patience=PATIENCE if slow else 1.0)
        clean = request.session.testsfailed == failed_before
    finally:
        machines.destroy(keep_logs=not clean)
