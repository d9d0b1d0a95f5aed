"""Manifest bounds through clusterctl on a real one-host lab: the agent reports its
underlay, and a subnet overlapping it is refused; hostile files are refused in one line
while the controller keeps answering."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Lab
from tests.e2e.test_single_host import _etcd_dump

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab]) -> Lab:
    return lab_factory(1)


def refused(lab: Lab, path: Path, text: str) -> str:
    path.write_text(text)
    before = _etcd_dump(lab)
    proc = lab.ctl("apply", "-f", str(path), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert _etcd_dump(lab) == before
    return lines[0]


def test_subnet_overlapping_the_lab_underlay_is_refused(lab: Lab, tmp_path: Path) -> None:
    host = lab.info["hosts"][0]
    underlay = ipaddress.IPv4Interface(f"{host['underlay_ip']}/24").network
    line = refused(lab, tmp_path / "net.yaml",
                   "apiVersion: berth/v1\nkind: Network\nmetadata: {name: clash}\n"
                   f"spec: {{driver: overlay, subnet: {underlay}}}\n")
    assert f"spec.subnet: {underlay} overlaps node h1's address {host['underlay_ip']}/" in line


def test_hostile_files_are_refused_while_get_answers(lab: Lab, tmp_path: Path) -> None:
    levels = ["  x-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 9):
        levels.append(f"  x-{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("apiVersion: berth/v1\nkind: Service\nmetadata: {name: lol}\nspec:\n"
                      "  image: busybox\n" + "\n".join(levels) + "\n  command: *l8\n")
    apply = subprocess.Popen([str(BIN / "clusterctl"), "apply", "-f", str(laughs)],
                             env=lab.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert "h1" in lab.ctl("get", "nodes").stdout
        _, stderr = apply.communicate(timeout=120)
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    assert apply.returncode == 1
    assert "more than 100000 nodes once aliases are expanded" in stderr
    service = ("apiVersion: berth/v1\nkind: Service\nmetadata: {name: web}\n"
               "spec: {replicas: 2, image: busybox:latest}\n")
    assert "spec.replicas: 1000000000 is more than the maximum of 100" in refused(
        lab, tmp_path / "many.yaml", service.replace("replicas: 2", "replicas: 1000000000"))
    assert "a service name is at most 59 characters (got 63)" in refused(
        lab, tmp_path / "long.yaml", service.replace("name: web", "name: " + "w" * 63))
    assert "0.0.0.0/0 is the default route" in refused(
        lab, tmp_path / "route.yaml", "apiVersion: berth/v1\nkind: Network\n"
        "metadata: {name: everything}\nspec: {subnet: 0.0.0.0/0}\n")
