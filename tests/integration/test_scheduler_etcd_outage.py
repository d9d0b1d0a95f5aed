"""The scheduler loop rides out an etcd outage: real etcd stopped and started under it.

The loop runs as the daemon runs it (Scheduler.run as a task). While etcd is down
it is woken so passes (and the watch restart of a resync) fail for real; the task
must still be alive afterwards, and a service applied once etcd is back must be
placed without anything else poking the scheduler.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.records import ContainerSpec, NodeRecord
from controller import store
from controller.scheduler import Scheduler
from tests.integration.conftest import EtcdServer

pytestmark = pytest.mark.integration

SERVICE = """\
apiVersion: berth/v1
kind: Service
metadata: {{name: {name}}}
spec:
  replicas: 1
  image: busybox:latest
"""


async def _placements(etcd: Etcd3Client) -> dict[str, str]:
    listing = await etcd.get_prefix(keyspace.ASSIGN)
    specs = [ContainerSpec.loads(v) for v, _ in listing.items]
    return {s.name: s.node for s in specs}


async def _until_placed(etcd: Etcd3Client, want: dict[str, str], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    last: dict[str, str] = {}
    while asyncio.get_running_loop().time() < deadline:
        last = await _placements(etcd)
        if last == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"placements never became {want}; last: {last}")


async def test_scheduler_survives_etcd_outage_and_places_new_service_after(
    etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.scheduler")
    async with Etcd3Client(etcd_server.endpoint, timeout=2.0) as etcd:
        await etcd.put(keyspace.node("host1"), NodeRecord(
            name="host1", address="192.0.2.10", agent_addr="127.0.0.1:1",
            bip="172.17.0.1/16", gwbridge="172.18.0.1/16").dumps())
        scheduler = Scheduler(etcd)
        task = asyncio.create_task(scheduler.run(), name="scheduler")
        try:
            await store.apply(etcd, "a.yaml", SERVICE.format(name="before"))
            await _until_placed(etcd, {"before-1": "host1"}, within=10)

            etcd_server.stop()
            try:
                # Wake it repeatedly so passes and watch restarts hit the dead etcd.
                for _ in range(30):
                    scheduler.wake()
                    await asyncio.sleep(0.1)
                    assert not task.done(), f"scheduler ended during the outage: {task}"
            finally:
                await asyncio.to_thread(etcd_server.start)
            assert any("scheduler pass failed" in r.getMessage() for r in caplog.records), \
                "no pass ran while etcd was down: the test proved nothing"

            # Nothing wakes it but its own retry and watches: a new service gets placed.
            await store.apply(etcd, "b.yaml", SERVICE.format(name="after"))
            await _until_placed(etcd, {"before-1": "host1", "after-1": "host1"}, within=20)
            assert not task.done()
        finally:
            task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError), results
