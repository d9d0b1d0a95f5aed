"""One qemu VM with Debian's own kernel, deployed by ansible/site.yml as a one-node cluster
(the host in both [berth] and [berth_controller], etcd a 1-member cluster), the way
tests/deploy deploys three nspawn machines: from inside the VM's namespace, with the
wheelhouse fetched outside first (tests/deploy/control.py).

Then what only a full kernel shows, asserted as a user sees it: ``clusterctl info`` reports
cgroup v2 and the macvlan 802.1q driver offered; a container's cgroup lives on the pure v2
tree with its controllers; a macvlan network on the VLAN sub-interface ``eth1.10`` applied
through the cluster gives a container its address and creates ``eth1.10`` (802.1Q, id 10);
and inside the VM, berth's kernel-dependent tests pass: the 802.1q part of the macvlan
driver test and the runtime's cgroup tests on a pure v2 host.

The tests run in file order on one VM; the first deploys it. CI runs this module (the VM
image is built before pytest by scripts/test.sh).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.busybox import build_busybox_image
from tests.deploy.control import Deployment, prefetch_wheelhouse
from tests.vm.conftest import SOURCE, VENV_PYTHON
from tests.vm.machine import VmCluster, VmImage

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

MEMORY_MB = 1536
PATIENCE = 5.0                 # TCG: every wait this many times longer than on nspawn

MANIFEST = """\
apiVersion: berth/v1
kind: Service
metadata: {name: sleeper}
spec:
  replicas: 1
  image: busybox:latest
  command: [sleep, "36000"]
"""

VLAN_MANIFEST = """\
apiVersion: berth/v1
kind: Network
metadata: {name: vlan10}
spec:
  driver: macvlan
  subnet: 10.231.10.0/24
  options: {parent: eth1.10}
---
apiVersion: berth/v1
kind: Service
metadata: {name: tagged}
spec:
  replicas: 1
  image: busybox:latest
  command: [sleep, "36000"]
  networks: [vlan10]
"""

# Inside the VM: the 802.1q test of the macvlan driver, and the tests that check cgroups
# (the runtime's creation and removal of container cgroups, the agent's host facts).
IN_VM_TESTS = (
    "tests/integration/test_macvlan_driver.py::test_vlan_parent",
    "tests/integration/test_runtime.py::test_create_start_gives_running_container_with_docker_hardening",
    "tests/integration/test_runtime.py::test_delete_leaves_no_mount_cgroup_or_bundle_and_is_idempotent",
    "tests/integration/test_runtime.py::test_failed_create_undoes_everything",
    "tests/integration/test_runtime.py::test_delete_cleans_up_after_an_agent_crash_inside_create",
    "tests/integration/test_runtime.py::test_new_runtime_adopts_running_containers_and_sees_exits",
    "tests/unit/agent/test_hostfacts.py",
)


@pytest.fixture(scope="module")
def one_node(request: pytest.FixtureRequest, vm_image: VmImage,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    control = tmp_path_factory.mktemp("control")
    prefetch_wheelhouse(control / "wheelhouse")
    cluster = VmCluster(vm_image, 1, prefix="node", memory_mb=MEMORY_MB)
    failed_before = request.session.testsfailed
    clean = False
    try:
        started = time.monotonic()
        (vm,) = cluster.boot()
        print(f"\n{vm.name} ({cluster.accel.name}) answered SSH after "
              f"{time.monotonic() - started:.0f}s")
        cluster.put_source(SOURCE)
        yield Deployment(cluster, control, patience=PATIENCE if cluster.accel.slow else 1.0)
        clean = request.session.testsfailed == failed_before
    finally:
        cluster.destroy(keep_logs=not clean)


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(2)


def apply(one_node: Deployment, tmp_path: Path, name: str, text: str) -> None:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(text)
    one_node.ctl("apply", "-f", str(manifest), "--wait",
                 "--timeout", str(180 * one_node.patience), timeout=300 * one_node.patience)


def test_playbook_deploys_a_one_node_cluster(one_node: Deployment) -> None:
    started = time.monotonic()
    recap = one_node.playbook()
    print(f"playbook: {time.monotonic() - started:.0f}s, {recap.describe()}")
    assert recap.returncode == 0, recap.output[-6000:]
    assert recap.failed == {"node1": 0}, recap.output[-3000:]
    node1 = one_node.nodes[0]
    members = one_node.etcdctl(node1, "member", "list")
    assert len(re.findall(r", started, ", members)) == 1, members
    health = one_node.etcdctl(node1, "endpoint", "health")
    assert health.count("is healthy") == 1, health
    assert node1.check("systemctl is-active etcd berth-controller berth-agent").split() == \
        ["active"] * 3
    wait_until("node1 Ready", lambda: "Ready" in one_node.ctl("get", "nodes").stdout,
               timeout=120 * one_node.patience)


def test_info_shows_cgroup_v2_and_macvlan_8021q_offered(one_node: Deployment) -> None:
    def info_json() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(one_node.ctl("info", "-o", "json").stdout)
        return found

    # The controller asks etcd for its status with a short deadline, which a loaded TCG VM
    # can miss once: the member must be healthy within the wait.
    wait_until("etcd member healthy in clusterctl info", lambda: [
        (m["healthy"], m["error"]) for m in info_json()["etcd"]["members"]] == [(True, "")],
        timeout=60 * one_node.patience)
    info = info_json()
    (node,) = info["nodes"]
    assert (node["name"], node["status"], node["cgroup"]) == ("node1", "Ready", "v2"), node
    assert node["drivers"]["macvlan 802.1q"] == {"available": True, "reason": ""}, node
    text = one_node.ctl("info").stdout
    assert re.search(r"(?m)^    cgroup:   v2$", text), text
    drivers = re.search(r"(?m)^    drivers:  (.*)$", text)
    assert drivers and "macvlan 802.1q" in drivers.group(1).split(", "), text


def test_a_container_runs_in_its_own_cgroup_on_the_v2_tree(one_node: Deployment,
                                                           tmp_path: Path) -> None:
    tar = build_busybox_image(tmp_path / "busybox.tar")
    one_node.ctl("image", "load", str(tar), timeout=300 * one_node.patience)
    apply(one_node, tmp_path, "sleeper", MANIFEST)
    assert one_node.containers()["sleeper-1"]["state"] == "running"
    node1 = one_node.nodes[0]
    assert node1.check("stat -f -c %T /sys/fs/cgroup").strip() == "cgroup2fs"
    (pid,) = one_node.container_pids(node1).values()
    lines = node1.check(f"cat /proc/{pid}/cgroup").split()
    assert len(lines) == 1 and lines[0].startswith("0::/"), lines   # pure v2: one line
    path = "/sys/fs/cgroup" + lines[0][3:]
    assert path != "/sys/fs/cgroup/", lines
    procs = node1.check(f"cat {path}/cgroup.procs").split()
    assert str(pid) in procs, (path, procs)
    controllers = node1.check(f"cat {path}/cgroup.controllers").split()
    assert {"cpu", "memory", "pids"} <= set(controllers), (path, controllers)


def test_a_macvlan_network_on_eth1_10_gives_a_container_its_address(
        one_node: Deployment, tmp_path: Path) -> None:
    node1 = one_node.nodes[0]
    assert node1.run("ip link show dev eth1.10").returncode != 0, "eth1.10 exists already"
    apply(one_node, tmp_path, "vlan10", VLAN_MANIFEST)
    sub = json.loads(node1.check("ip -d -j link show dev eth1.10"))[0]
    assert (sub["link"], sub["linkinfo"]["info_kind"]) == ("eth1", "vlan"), sub
    assert (sub["linkinfo"]["info_data"]["protocol"], sub["linkinfo"]["info_data"]["id"]) == \
        ("802.1Q", 10), sub
    shown = one_node.ctl("exec", "tagged-1", "--", "ip", "-4", "-o", "addr", "show").stdout
    assert re.search(r"inet 10\.231\.10\.\d+/24", shown), shown


def test_kernel_dependent_tests_pass_inside_the_vm(one_node: Deployment) -> None:
    node1 = one_node.nodes[0]
    done = node1.run(f"cd {SOURCE} && {VENV_PYTHON} -m pytest -p no:cacheprovider -q "
                     + " ".join(IN_VM_TESTS), timeout=1500)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"in {node1.name}:\n{out[-8000:]}"
    summary = re.search(r"(\d+) passed", out)
    assert summary and not re.search(r"\d+ (skipped|failed|error)", out), out[-3000:]
    print(out.strip().splitlines()[-1])
