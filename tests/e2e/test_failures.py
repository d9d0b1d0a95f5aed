"""Which part failed, and poison pills, on a real one-host lab through clusterctl.

Daemons are killed by the PIDs the lab recorded and brought back with ``lab up`` (which
restarts what is missing). Garbage is written straight into the lab's etcd, as a bad
tool would. The last test stops etcd; the lab is torn down after the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from berth import keyspace
from berth.records import ContainerStatus
from tests.e2e.conftest import BIN, Lab, wait_until

pytestmark = pytest.mark.e2e

WEB = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec: {image: busybox:latest, command: [sleep, "3600"]}
"""
LATE = WEB.replace("name: web", "name: late")
SCHEMA_INVALID = json.dumps({
    "apiVersion": "berth/v1", "kind": "Service", "metadata": {"name": "neg"},
    "spec": {"replicas": -1, "image": "busybox:latest"}}).encode()


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Lab]:
    lab = lab_factory(1)
    path = tmp_path_factory.mktemp("f") / "web.yaml"
    path.write_text(WEB)
    lab.ctl("apply", "-f", str(path), "--wait")
    yield lab


def _kill(lab: Lab, role: str) -> None:
    lab.refresh()
    pid = lab.info["pids"][role]
    os.kill(pid, signal.SIGKILL)
    wait_until(f"{role} ({pid}) gone", lambda: not Path(f"/proc/{pid}").exists()
               or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z")


def _lab_up(lab: Lab) -> None:
    import subprocess

    subprocess.run([str(BIN / "clusterctl"), "lab", "up", "--name", lab.name, "--hosts", "1"],
                   check=True, timeout=300, capture_output=True)
    lab.refresh()


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


async def _etcd_put(lab: Lab, items: dict[str, bytes]) -> None:
    async with lab.etcd() as etcd:
        for key, value in items.items():
            await etcd.put(key, value)


async def _etcd_get(lab: Lab, key: str) -> bytes | None:
    async with lab.etcd() as etcd:
        value, _ = await etcd.get(key)
        return value


def test_dead_agent_exec_and_logs_exit_125_naming_the_node(lab: Lab) -> None:
    _kill(lab, "agent-h1")
    try:
        for verb in (["exec", "web-1", "--", "true"], ["logs", "web-1"]):
            proc = lab.ctl(*verb, check=False)
            assert proc.returncode == 125, (verb, proc.stderr)
            line = _one_line(proc.stderr)
            assert 'node "h1"' in line or "node h1" in line, line
    finally:
        _lab_up(lab)


def test_poison_pills_are_invalid_and_survive_restarts(lab: Lab, tmp_path: Path) -> None:
    _kill(lab, "agent-h1")
    _kill(lab, "controller")
    asyncio.run(_etcd_put(lab, {
        keyspace.desired("Service", "junk"): b"{not json",
        keyspace.desired("Service", "neg"): SCHEMA_INVALID,
        keyspace.assign("h1", "stray-1"): b"\xff garbage",
    }))
    _lab_up(lab)     # both restart with the poison already in etcd
    late = tmp_path / "late.yaml"
    late.write_text(LATE)
    lab.ctl("apply", "-f", str(late), "--wait", "--timeout", "120")   # the agent still works

    rows = lab.containers()
    assert rows["late-1"]["state"] == "running" and rows["web-1"]["state"] == "running"
    assert rows["stray-1"]["state"] == "invalid"
    assert rows["stray-1"]["invalid"].startswith("assignment: Invalid JSON")
    # The agent itself reported it, once, and did not try to run it.
    raw = asyncio.run(_etcd_get(lab, keyspace.status("h1", "stray-1")))
    assert raw is not None
    status = ContainerStatus.loads(raw)
    assert (status.state, status.node) == ("invalid", "h1")
    services = {r["name"]: r for r in json.loads(lab.ctl("get", "services", "-o", "json").stdout)}
    assert services["junk"]["invalid"].startswith("Invalid JSON")
    assert services["neg"]["invalid"] == "spec.replicas: Input should be greater than or equal to 0"
    assert services["web"]["invalid"] == ""
    assert lab.ctl("exec", "web-1", "--", "true").returncode == 0
    log = Path(lab.info["state_dir"]) / "logs" / "agent-h1.log"
    assert log.read_text().count("skipping invalid assignment") == 1


def test_etcd_down_names_etcd_and_exits_5(lab: Lab) -> None:
    _kill(lab, "etcd")
    try:
        proc = lab.ctl("get", "nodes", check=False)
        assert proc.returncode == 5, proc.stderr
        line = _one_line(proc.stderr)
        assert line.startswith(f"Error: the controller cannot reach etcd at {lab.info['etcd']}: ")
    finally:
        _lab_up(lab)
