"""Issue 9's must-show on three machines (systemd-nspawn in CI, qemu VMs by
scripts/vm-test.sh; tests/deploy/conftest.py): ansible/site.yml deploys berth
from scratch, then etcd, systemd, overlay pings by name, idempotence, live-restore across
an agent restart, an etcd member down, an upgrade that restarts no container, and a
certificate renewal that restarts only the daemon whose certificate changed.

The tests run in file order on one deployment (tests/deploy/conftest.py); each names what
a user would see. They need root, systemd-nspawn and the cached tree (scripts/vm-image.sh).
"""

from __future__ import annotations

import functools
import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from berth.busybox import build_busybox_image
from tests.deploy.control import REPO, Deployment

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1800)]

MANIFEST = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet}
spec: {driver: overlay, subnet: 10.42.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 3
  image: busybox:latest
  command: [sleep, "36000"]
  networks: [appnet]
"""

EXTRA = """\
apiVersion: berth/v1
kind: Service
metadata: {{name: {name}}}
spec:
  replicas: 1
  image: busybox:latest
  command: [sleep, "36000"]
  networks: [appnet]
  placement: {{node: node1}}
"""

WEB = ("web-1", "web-2", "web-3")


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(1)


def assert_ok(recap_text: str, returncode: int) -> None:
    assert returncode == 0, f"ansible-playbook exited {returncode}:\n{recap_text[-6000:]}"


def all_container_pids(deployment: Deployment) -> dict[str, dict[str, int]]:
    return {m.name: deployment.container_pids(m) for m in deployment.nodes}


def test_playbook_deploys_from_scratch(deployment: Deployment, tmp_path: Path) -> None:
    started = time.monotonic()
    recap = deployment.playbook()
    print(f"first playbook run: {time.monotonic() - started:.0f}s, {recap.describe()}")
    assert_ok(recap.output, recap.returncode)
    assert set(recap.failed) == {m.name for m in deployment.nodes}, recap.output[-3000:]
    assert not any(recap.failed.values())

    # etcd: three members, all started and healthy, over TLS with client certificates.
    node1 = deployment.nodes[0]
    members = deployment.etcdctl(node1, "member", "list")
    assert len(re.findall(r", started, ", members)) == 3, members
    health = deployment.etcdctl(node1, "endpoint", "health")
    assert health.count("is healthy") == 3, health
    refused = node1.run("ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "
                        "--cacert=/etc/berth/pki/ca.crt --dial-timeout=3s get x")
    assert refused.returncode != 0, "etcd served a client without a certificate"
    # RBAC (the etcd role's last task): node2's user may not write desired state.
    intruder = deployment.nodes[1].run(
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "
        "--cacert=/etc/berth/pki/ca.crt --cert=/etc/berth/pki/node-node2.crt "
        "--key=/etc/berth/pki/node-node2.key put /berth/desired/x y 2>&1")
    assert intruder.returncode != 0 and "permission denied" in intruder.stdout, intruder

    # systemd: the controller on node1, an agent on every node.
    assert node1.check("systemctl is-active berth-controller").strip() == "active"
    for machine in deployment.nodes:
        assert machine.check("systemctl is-active berth-agent etcd").split() == \
            ["active", "active"]
        assert machine.run("systemctl is-active berth-controller").stdout.strip() != \
            "active" or machine is node1

    wait_until("3 nodes Ready", lambda: deployment.ctl(
        "get", "nodes").stdout.count("Ready") == 3, timeout=120 * deployment.patience)
    stranger = deployment.ctl("get", "nodes", admin=False, check=False)
    assert stranger.returncode != 0, f"the controller served a client without a certificate:" \
        f"\n{stranger.stdout}"
    tar = build_busybox_image(tmp_path / "busybox.tar")
    deployment.ctl("image", "load", str(tar))
    manifest = tmp_path / "appnet.yaml"
    manifest.write_text(MANIFEST)
    deployment.ctl("apply", "-f", str(manifest), "--wait",
                   "--timeout", str(180 * deployment.patience), timeout=600 * deployment.patience)
    rows = deployment.containers()
    assert {n: rows[n]["state"] for n in WEB} == dict.fromkeys(WEB, "running"), rows
    assert {rows[n]["node"] for n in WEB} == {m.name for m in deployment.nodes}, rows


def test_all_six_ordered_pairs_ping_by_name(deployment: Deployment) -> None:
    def pings(src: str, dst: str) -> bool:
        return deployment.ctl("exec", src, "--", "ping", "-c1", "-W2", dst,
                              check=False).returncode == 0

    for src, dst in itertools.permutations(WEB, 2):
        wait_until(f"{src} pings {dst}", functools.partial(pings, src, dst),
                   timeout=60 * deployment.patience)


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    started = time.monotonic()
    recap = deployment.playbook()
    print(f"second playbook run: {time.monotonic() - started:.0f}s, {recap.describe()}")
    assert_ok(recap.output, recap.returncode)
    assert recap.changed == {m.name: 0 for m in deployment.nodes}, recap.output[-6000:]


def test_agent_restart_keeps_containers(deployment: Deployment) -> None:
    node2 = deployment.nodes[1]
    before = deployment.container_pids(node2)
    assert before, "node2 runs no container"
    # The monitors too: a container whose conmon died keeps running but loses its log
    # and exit code.
    monitors = deployment.monitor_pids(node2)
    assert len(monitors) == len(before), monitors
    agent_before = node2.check("systemctl show -p MainPID --value berth-agent").strip()
    node2.check("systemctl restart berth-agent")
    assert node2.check("systemctl is-active berth-agent").strip() == "active"
    agent_after = node2.check("systemctl show -p MainPID --value berth-agent").strip()
    assert agent_after != agent_before, "the agent was not restarted"
    assert deployment.container_pids(node2) == before
    assert deployment.monitor_pids(node2) == monitors
    wait_until("3 nodes Ready", lambda: deployment.ctl(
        "get", "nodes").stdout.count("Ready") == 3, timeout=120 * deployment.patience)
    assert deployment.container_pids(node2) == before


def test_one_etcd_member_down_still_serves_applies(deployment: Deployment,
                                                   tmp_path: Path) -> None:
    node3 = deployment.nodes[2]
    node3.check("systemctl stop etcd")
    try:
        manifest = tmp_path / "extra.yaml"
        manifest.write_text(EXTRA.format(name="while-etcd3-down"))
        deployment.ctl("apply", "-f", str(manifest), "--wait",
                       "--timeout", str(180 * deployment.patience),
                       timeout=300 * deployment.patience)
        assert deployment.containers()["while-etcd3-down-1"]["state"] == "running"
    finally:
        node3.check("systemctl start etcd")
    wait_until("etcd healthy again", lambda: deployment.etcdctl(
        deployment.nodes[0], "endpoint", "health").count("is healthy") == 3,
        timeout=120 * deployment.patience)


def served_serial(deployment: Deployment, address: str) -> int | None:
    """The serial of the certificate the TLS server at ``address`` presents (openssl from
    the control side, with the admin identity, as clusterctl would connect); None while
    nothing answers there with a certificate (a restarting daemon)."""
    pki = deployment.pki
    hello = subprocess.run(deployment.machines.enter(
        "openssl", "s_client", "-connect", address, "-CAfile", str(pki / "ca.crt"),
        "-cert", str(pki / "admin.crt"), "-key", str(pki / "admin.key")),
        input="", capture_output=True, text=True, timeout=60, check=False)
    shown = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=hello.stdout,
                           capture_output=True, text=True, timeout=30, check=False)
    if shown.returncode != 0:
        return None
    return int(shown.stdout.strip().partition("=")[2], 16)


def test_renewal_by_playbook_restarts_only_the_renewed_agent(deployment: Deployment) -> None:
    """``clusterctl pki renew`` on the control machine, then the playbook: node2's agent
    (and nothing else) restarts and serves the new certificate; no container restarts.
    (Before the upgrade test, whose newer wheel a later run would take back.)"""
    node2 = deployment.nodes[1]
    address = f"{node2.ip}:7071"
    old = served_serial(deployment, address)
    assert old is not None, f"node2's agent serves no certificate at {address}"
    before = all_container_pids(deployment)
    daemons = {m.name: m.check("systemctl show -p MainPID --value berth-agent etcd").split()
               for m in deployment.nodes}
    renewed = deployment.ctl("pki", "renew", str(deployment.pki), "node-node2")
    assert "node-node2: renewed" in renewed.stdout, renewed.stdout
    new = x509.load_pem_x509_certificate(
        (deployment.pki / "node-node2.crt").read_bytes()).serial_number
    assert new != old
    recap = deployment.playbook()
    print(f"renewal playbook run: {recap.describe()}")
    assert_ok(recap.output, recap.returncode)
    assert recap.changed["node2"] > 0 and recap.changed["node1"] == recap.changed["node3"] == 0, \
        recap.output[-6000:]
    after = {m.name: m.check("systemctl show -p MainPID --value berth-agent etcd").split()
             for m in deployment.nodes}
    assert after["node2"][0] != daemons["node2"][0], "node2's agent was not restarted"
    assert after["node2"][1] == daemons["node2"][1], "etcd was restarted for an agent's cert"
    assert {n: after[n] for n in ("node1", "node3")} == \
        {n: daemons[n] for n in ("node1", "node3")}
    wait_until("node2's agent serves its renewed certificate",
               lambda: served_serial(deployment, address) == new,
               timeout=120 * deployment.patience)
    assert all_container_pids(deployment) == before
    wait_until("3 nodes Ready", lambda: deployment.ctl(
        "get", "nodes").stdout.count("Ready") == 3, timeout=120 * deployment.patience)


def _source_with_version(dest: Path, version: str) -> Path:
    """This working tree (files git sees), with pyproject's version set to ``version``."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in names:
        if name and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    pyproject = dest / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = "[^"]+"', f'version = "{version}"',
                          pyproject.read_text())
    assert count == 1
    pyproject.write_text(text)
    return dest


def test_upgrade_by_playbook_restarts_no_container(deployment: Deployment,
                                                   tmp_path: Path) -> None:
    before = all_container_pids(deployment)
    monitors = {m.name: deployment.monitor_pids(m) for m in deployment.nodes}
    agents = {m.name: m.check("systemctl show -p MainPID --value berth-agent").strip()
              for m in deployment.nodes}
    source = _source_with_version(tmp_path / "src", "0.1.0.post9")
    started = time.monotonic()
    recap = deployment.playbook(berth_source_dir=str(source))
    print(f"upgrade playbook run: {time.monotonic() - started:.0f}s, {recap.describe()}")
    assert_ok(recap.output, recap.returncode)
    for machine in deployment.nodes:
        version = machine.check(
            "/opt/berth/venv/bin/python -c 'import importlib.metadata as m; "
            "print(m.version(\"berth\"))'").strip()
        assert version == "0.1.0.post9", (machine.name, version)
        restarted = machine.check("systemctl show -p MainPID --value berth-agent").strip()
        assert restarted != agents[machine.name], f"{machine.name}: agent not restarted"
    assert all_container_pids(deployment) == before
    assert {m.name: deployment.monitor_pids(m) for m in deployment.nodes} == monitors
    wait_until("web-1 pings web-3 after the upgrade", lambda: deployment.ctl(
        "exec", "web-1", "--", "ping", "-c1", "-W2", "web-3", check=False).returncode == 0,
        timeout=120 * deployment.patience)
