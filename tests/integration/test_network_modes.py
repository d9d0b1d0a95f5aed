"""network_mode none, host and container:<name> with real runc, conmon and namespaces.

The "node" is a network namespace the test makes (tests/agentnode.py: an eth0 with a
lab address, runc started inside it), so a host-mode container shares that namespace,
never the machine's own. Every container, mount, cgroup and namespace is removed at the
end, also on failure.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from agent.hooks import ContainerHooks
from agent.reconcile import Reconciler
from agent.runtime.bundle import rewrite_file
from agent.runtime.containers import Container, Runtime
from agent.runtime.errors import JoinTargetNotRunning
from berth import keyspace
from berth.lifecycle import ContainerState as State
from berth.records import ContainerSpec
from tests.agentnode import NodeNs, sh, sh_in
from tests.unit.agent.test_reconcile import FakeKV

pytestmark = pytest.mark.integration

NODE = "nm-node"


def spec(name: str, mode: str = "", generation: int = 1) -> ContainerSpec:
    return ContainerSpec(name=name, service=name.rsplit("-", 1)[0], node=NODE, image="busybox",
                         command=("sleep", "3600"), network_mode=mode, generation=generation)


async def run(rt: Runtime, s: ContainerSpec) -> Container:
    await rt.create(s)
    return await rt.start(s.name)


async def links(rt: Runtime, name: str) -> list[str]:
    text = await sh_in(rt, name, "ls /sys/class/net")
    return sorted(text.split())


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


async def test_none_has_only_loopback_and_it_is_up(node_rt: Runtime) -> None:
    rt = node_rt
    await run(rt, spec("quiet-1", "none"))
    assert await links(rt, "quiet-1") == ["lo"]
    assert "127.0.0.1" in await sh_in(rt, "quiet-1", "ip -o -4 addr show lo")
    assert ",UP" in await sh_in(rt, "quiet-1", "ip -o link show lo")


async def test_host_shares_the_nodes_netns_with_its_own_hostname(
    node_rt: Runtime, node_ns: NodeNs,
) -> None:
    rt = node_rt
    before = socket.gethostname()
    c = await run(rt, spec("top-1", "host"))
    assert await links(rt, "top-1") == ["eth0", "eth0p", "lo"]
    assert f"inet {node_ns.ip}/24" in await sh_in(rt, "top-1", "ip -o -4 addr show eth0")
    assert c.netns is not None and netns_inode(c.netns) == netns_inode(node_ns.path)
    assert (await sh_in(rt, "top-1", "hostname")).strip() == NODE
    assert (await sh_in(rt, "top-1", "cat /etc/hostname")).strip() == NODE
    assert socket.gethostname() == before          # its own UTS namespace


async def give_eth0(c: Container, cidr: str) -> None:
    """What a driver's ADD would do: an eth0 with an address inside the container's netns."""
    assert c.netns is not None
    enter = ("nsenter", f"--net={c.netns}", "ip")
    sh(*enter, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    sh(*enter, "addr", "add", cidr, "dev", "eth0")
    sh(*enter, "link", "set", "eth0", "up")


async def test_container_mode_joins_the_targets_netns_and_files(node_rt: Runtime) -> None:
    rt = node_rt
    target = await run(rt, spec("db-1"))
    await give_eth0(target, "10.88.0.5/24")
    rewrite_file(target.files.hosts, "127.0.0.1\tlocalhost\n10.88.0.5\tdb-1\n")
    joiner = await run(rt, spec("side-1", "container:db-1"))
    assert "inet 10.88.0.5/24" in await sh_in(rt, "side-1", "ip -o -4 addr show eth0")
    assert target.netns and joiner.netns
    assert netns_inode(joiner.netns) == netns_inode(target.netns)
    assert (await sh_in(rt, "side-1", "hostname")).strip() == "db-1"
    assert "10.88.0.5\tdb-1" in await sh_in(rt, "side-1", "cat /etc/hosts")
    assert joiner.joined is not None and joiner.joined.container == "db-1"
    assert joiner.joined.init == target.init


async def test_container_mode_without_a_running_target_waits_and_leaves_nothing(
    node_rt: Runtime,
) -> None:
    rt = node_rt
    with pytest.raises(JoinTargetNotRunning, match="waiting for container db-1"):
        await rt.create(spec("side-1", "container:db-1"))
    assert [c.name for c in await rt.list()] == []
    await rt.create(spec("db-1"))          # created, not started: still not joinable
    with pytest.raises(JoinTargetNotRunning):
        await rt.create(spec("side-1", "container:db-1"))
    assert not (rt.containers_dir / "side-1").exists()


class Eth0PerGeneration(ContainerHooks):
    """Stands in for the network hooks: db-1 generation N gets 10.88.0.(4+N)."""

    async def before_start(self, spec: ContainerSpec, container: Container) -> None:
        if spec.name == "db-1":
            await give_eth0(container, f"10.88.0.{4 + spec.generation}/24")


async def _until(check: object, what: str) -> None:
    """Run reconcile passes until ``check()`` holds (a bounded wait, not a timing claim)."""
    for _ in range(60):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"never happened: {what}")


async def test_joiner_is_recreated_with_its_target(node_rt: Runtime) -> None:
    rt = node_rt
    kv = FakeKV()

    async def no_pull(ref: str) -> None:
        return None

    r = Reconciler(etcd=kv, runtime=rt, node=NODE, pull_image=no_pull,
                   hooks=Eth0PerGeneration())
    task = asyncio.create_task(r.run())
    try:
        for s in (spec("side-1", "container:db-1"), spec("db-1")):
            await kv.put(keyspace.assign(NODE, s.name), s.dumps())
        r.wake()

        async def joined(generation: int) -> bool:
            state = {c.name: c for c in await rt.list()}
            db, side = state.get("db-1"), state.get("side-1")
            return bool(db and side and db.spec.generation == generation
                        and side.state is State.RUNNING and side.joined
                        and side.joined.init == db.init)

        await _until(lambda: joined(1), "side-1 runs in db-1's netns")
        assert "10.88.0.5/24" in await sh_in(rt, "side-1", "ip -o -4 addr show eth0")
        first = (await rt.state("side-1")).init
        await kv.put(keyspace.assign(NODE, "db-1"), spec("db-1", generation=2).dumps())
        r.wake()
        await _until(lambda: joined(2), "side-1 follows db-1's new init")
        assert (await rt.state("side-1")).init != first
        out = await sh_in(rt, "side-1", "ip -o -4 addr show eth0")
        assert "10.88.0.6/24" in out and "10.88.0.5/24" not in out
        status = kv.status("side-1", NODE)
        assert status is not None and status.state == "running"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        while r._workers:
            await asyncio.gather(*r._workers.values(), return_exceptions=True)
