"""Fixtures for the deployment tests: three systemd-nspawn machines booted from the tree
scripts/vm-image.sh keeps (tests/deploy/machines.py), and the control side that runs
ansible/site.yml and clusterctl against them (tests/deploy/control.py).

``deployment`` is module-scoped: the tests of a module share one set of machines, and run
in file order (the playbook from scratch first). Everything is torn down after the module,
even when a test or the boot failed; when anything failed, the consoles are kept and
their directory named on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import needs
from tests.deploy.control import Deployment, prefetch_wheelhouse
from tests.deploy.machines import MachineSet
from tests.vm.machine import IMAGE_SCRIPT

MACHINES = 3


def _image_dir() -> Path:
    import subprocess

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


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    needs.root()
    for tool, package in (("systemd-nspawn", "systemd-container"), ("ssh", "openssh-client"),
                          ("setpriv", "util-linux"), ("debootstrap", "debootstrap")):
        needs.tool(tool, package)
    image = _image_dir()
    control = tmp_path_factory.mktemp("control")
    prefetch_wheelhouse(control / "wheelhouse")
    failed_before = request.session.testsfailed
    machines = MachineSet(image / "tree", image / "id_ed25519", MACHINES)
    clean = False
    try:
        started = time.monotonic()
        machines.boot()
        print(f"\n{MACHINES} nspawn machines booted in {time.monotonic() - started:.0f}s")
        yield Deployment(machines, control)
        clean = request.session.testsfailed == failed_before
    finally:
        machines.destroy(keep_logs=not clean)
