"""Poison pills in etcd: the controller daemon shows them as Invalid and serves the rest.

Garbage and schema-invalid records are written straight into etcd (as a bad tool or a
bug elsewhere would), then the real ``berth-controller`` daemon is started, asked, and
restarted. What is asserted is what ``clusterctl`` prints.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.records import NodeRecord
from tests.integration.conftest import EtcdServer
from tests.integration.test_errors import clusterctl

pytestmark = pytest.mark.integration

GOOD = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec: {replicas: 1, image: busybox:latest}
"""
SCHEMA_INVALID = json.dumps({
    "apiVersion": "berth/v1", "kind": "Service", "metadata": {"name": "neg"},
    "spec": {"replicas": -1, "image": "busybox:latest"}}).encode()


class Daemon:
    """A controller process; it binds port 0 and its log says which port it got, so a
    port another process takes meanwhile cannot make it fail (a free-port race)."""

    def __init__(self, etcd: str, state_dir: Path, log: Path) -> None:
        self.address = ""
        self._argv = [sys.executable, "-m", "controller.main", "--listen", "127.0.0.1:0",
                      "--etcd", etcd, "--state-dir", str(state_dir),
                      "--metrics-listen", "127.0.0.1:0"]
        self._log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._log.touch()
        offset = self._log.stat().st_size
        with self._log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self._argv, stdout=asyncio.subprocess.DEVNULL, stderr=log)
        for _ in range(150):
            found = re.search(r"controller listening on port (\d+)",
                              self._log.read_text()[offset:])
            if found:
                self.address = f"127.0.0.1:{found.group(1)}"
                if (await clusterctl(self.address, "get", "nodes")).code == 0:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"controller did not come up: {self._log.read_text()}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            finally:
                if self.proc.returncode is None:
                    self.proc.kill()
                    await self.proc.wait()
        self.proc = None

    def log_lines(self, needle: str) -> int:
        return sum(needle in line for line in self._log.read_text().splitlines())


@pytest.fixture
async def poisoned(etcd_server: EtcdServer, tmp_path: Path) -> AsyncIterator[Daemon]:
    async with Etcd3Client(etcd_server.endpoint) as etcd:
        await etcd.put(keyspace.node("host1"), NodeRecord(
            name="host1", address="192.0.2.10", agent_addr="127.0.0.1:1",
            bip="172.17.0.1/16", gwbridge="172.18.0.1/16").dumps())
        await etcd.put(keyspace.desired("Service", "junk"), b"{not json")
        await etcd.put(keyspace.desired("Service", "neg"), SCHEMA_INVALID)
        await etcd.put(keyspace.desired("Network", "badnet"), b"[]")
        await etcd.put(keyspace.assign("host1", "stray-1"), b"\xff\xfe garbage")
        await etcd.put(keyspace.status("host1", "ghost-1"), b'{"name": "ghost-1"}')
    daemon = Daemon(etcd_server.endpoint, tmp_path / "state", tmp_path / "controller.log")
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


async def _json(address: str, kind: str) -> dict[str, dict[str, object]]:
    result = await clusterctl(address, "get", kind, "-o", "json")
    assert result.code == 0, result
    return {row["name"]: row for row in json.loads(result.stdout)}


async def _placed(address: str, name: str) -> dict[str, object]:
    for _ in range(100):
        rows = await _json(address, "containers")
        if rows.get(name, {}).get("node") == "host1":
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} was never placed: {rows}")


async def test_invalid_records_are_listed_as_invalid_and_the_rest_is_served(
    poisoned: Daemon, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    applied = await clusterctl(poisoned.address, "apply", "-f", str(good))
    assert applied.code == 0, applied
    containers = await _placed(poisoned.address, "web-1")   # the scheduler still works
    assert containers["stray-1"]["state"] == "invalid"
    assert containers["stray-1"]["node"] == "host1"
    assert str(containers["stray-1"]["invalid"]).startswith("assignment: Invalid JSON")
    assert containers["ghost-1"]["invalid"] == "status: node: Field required (and 1 more)"
    assert containers["web-1"]["invalid"] == ""

    services = await _json(poisoned.address, "services")
    assert services["junk"]["invalid"].startswith("Invalid JSON")  # type: ignore[union-attr]
    assert services["neg"]["invalid"] == (
        "spec.replicas: Input should be greater than or equal to 0")
    assert services["web"]["invalid"] == "" and services["web"]["replicas"] == 1
    networks = await _json(poisoned.address, "networks")
    assert networks["badnet"]["invalid"].startswith("wrong type")  # type: ignore[union-attr]

    table = await clusterctl(poisoned.address, "get", "services")
    row = next(line for line in table.stdout.splitlines() if line.startswith("neg "))
    assert "Invalid: spec.replicas: Input should be greater than or equal to 0" in row

    # Logged once per bad key, however many passes and gets read it.
    assert poisoned.log_lines("skipping invalid service junk") == 1

    # After a restart the daemon still serves, and still shows them.
    await poisoned.stop()
    await poisoned.start()
    services = await _json(poisoned.address, "services")
    assert set(services) == {"junk", "neg", "web"}
    # The invalid object can be deleted like any other.
    deleted = await clusterctl(poisoned.address, "delete", "service", "junk")
    assert deleted.code == 0, deleted
    assert set(await _json(poisoned.address, "services")) == {"neg", "web"}
    assert (await clusterctl(poisoned.address, "delete", "network", "badnet")).code == 0
