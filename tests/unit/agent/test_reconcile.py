"""The reconciler against in-memory fakes of etcd and the runtime (agent.ports)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from agent.errors import NetworkUnavailable
from agent.hooks import ContainerHooks
from agent.reconcile import Reconciler
from agent.runtime.bundle import ContainerFiles
from agent.runtime.containers import Container
from agent.runtime.errors import ContainerNotFound, JoinTargetNotRunning, SpecError
from agent.runtime.netmode import InitId, JoinedNetns
from berth import keyspace
from berth.etcd import KVMeta, Lease, Listing, WatchEvent
from berth.etcd.txn import Compare, Delete, Op
from berth.lifecycle import ContainerState as State
from berth.records import ContainerSpec, ContainerStatus

NODE = "h1"


class FakeKV:
    """Keys with mod revisions; transactions support mod compares and deletes."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.revision = 1

    def _meta(self, key: str) -> KVMeta:
        return KVMeta(key, 1, self.data[key][1], 1, 0)

    async def get(self, key: str) -> tuple[bytes | None, KVMeta | None]:
        if key not in self.data:
            return None, None
        return self.data[key][0], self._meta(key)

    async def get_prefix(self, prefix: str) -> Listing:
        items = tuple(
            (v, self._meta(k)) for k, (v, _) in sorted(self.data.items()) if k.startswith(prefix)
        )
        return Listing(items, self.revision)

    async def put(self, key: str, value: bytes | str, lease: Lease | int | None = None) -> int:
        self.revision += 1
        self.data[key] = (value.encode() if isinstance(value, str) else value, self.revision)
        return self.revision

    async def delete(self, key: str) -> bool:
        self.revision += 1
        return self.data.pop(key, None) is not None

    async def transaction(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> tuple[bool, list[Listing | None]]:
        ok = all(
            c.target == "mod_revision" and c.op == "=="
            and c.key in self.data and self.data[c.key][1] == c.operand
            for c in compare
        )  # fmt: skip
        for op in success if ok else failure:
            assert isinstance(op, Delete), op
            await self.delete(op.key)
        return ok, []

    async def watch_prefix(
        self, prefix: str, start_revision: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]

    def status(self, name: str, node: str = NODE) -> ContainerStatus | None:
        entry = self.data.get(keyspace.status(node, name))
        return ContainerStatus.loads(entry[0]) if entry else None


@dataclass
class FakeImages:
    refs: set[str] = field(default_factory=lambda: {"busybox:latest"})

    def has(self, ref: str) -> bool:
        return ref in self.refs


@dataclass
class FakeRuntime:
    images_: FakeImages = field(default_factory=FakeImages)
    containers: dict[str, Container] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_create: str = ""
    refuse_create: Exception | None = None
    next_pid: int = 100

    @property
    def images(self) -> FakeImages:
        return self.images_

    async def list(self) -> list[Container]:
        return list(self.containers.values())

    async def state(self, name: str) -> Container:
        try:
            return self.containers[name]
        except KeyError:
            raise ContainerNotFound(name) from None

    async def create(self, spec: ContainerSpec) -> Container:
        self.calls.append(("create", spec.name))
        if self.fail_create:
            raise RuntimeError(self.fail_create)
        if self.refuse_create is not None and spec.generation == 1:
            raise self.refuse_create
        joined = None
        if spec.network_mode.startswith("container:"):
            target = self.containers.get(spec.network_mode.partition(":")[2])
            if target is None or target.state is not State.RUNNING or target.init is None:
                raise JoinTargetNotRunning(f"{spec.network_mode}: waiting for its target")
            joined = JoinedNetns(target.name, target.init)
        self.next_pid += 1
        files = ContainerFiles(Path("/h"), Path("/n"), Path("/r"))
        c = Container(
            name=spec.name,
            state=State.CREATED,
            pid=self.next_pid,
            exit_code=None,
            started_at="",
            finished_at="",
            error="",
            bundle=Path("/b"),
            files=files,
            netns=None,
            spec=spec,
            image_id="sha256:x",
            init=InitId(self.next_pid, self.next_pid * 10),
            joined=joined,
        )
        self.containers[spec.name] = c
        return c

    async def start(self, name: str) -> Container:
        self.calls.append(("start", name))
        c = replace(self.containers[name], state=State.RUNNING, started_at="2026-01-01T00:00:00Z")
        self.containers[name] = c
        return c

    async def stop(self, name: str, timeout: float = 10.0) -> Container:  # noqa: ASYNC109
        self.calls.append(("stop", name))
        self.exit(name, 143)
        return self.containers[name]

    async def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        self.containers.pop(name, None)

    def exit(self, name: str, code: int) -> None:
        self.containers[name] = replace(
            self.containers[name], state=State.EXITED, exit_code=code, pid=0, init=None
        )


def spec(name: str, generation: int = 1) -> ContainerSpec:
    return ContainerSpec(
        name=name, service="web", node=NODE, image="busybox:latest", generation=generation
    )


async def assign(kv: FakeKV, s: ContainerSpec) -> None:
    await kv.put(keyspace.assign(NODE, s.name), s.dumps())


async def settle(r: Reconciler) -> None:
    """Run passes until no container worker is left busy."""
    for _ in range(5):
        await r.sync_once()
        while r._workers:
            await asyncio.gather(*r._workers.values())


@pytest.fixture
def world() -> tuple[FakeKV, FakeRuntime, Reconciler]:
    kv, rt = FakeKV(), FakeRuntime()

    async def no_pull(ref: str) -> None:
        return None

    return kv, rt, Reconciler(etcd=kv, runtime=rt, node=NODE, pull_image=no_pull)


async def test_assignment_is_created_started_and_reported(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    assert rt.calls == [("create", "web-1"), ("start", "web-1")]
    status = kv.status("web-1")
    assert status is not None and status.state == "running" and status.pid == 101


async def test_running_container_is_adopted_not_restarted(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await rt.create(spec("web-1"))
    await rt.start("web-1")
    rt.calls.clear()
    await settle(r)
    assert rt.calls == []
    assert kv.status("web-1") is not None and kv.status("web-1").state == "running"  # type: ignore[union-attr]


async def test_exit_is_reported_with_code_and_not_restarted(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    rt.exit("web-1", 137)
    rt.calls.clear()
    await settle(r)
    status = kv.status("web-1")
    assert status is not None and (status.state, status.exit_code) == ("exited", 137)
    assert rt.calls == []


async def test_unassigned_container_is_deleted_with_its_status(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    await kv.delete(keyspace.assign(NODE, "web-1"))
    await settle(r)
    assert rt.containers == {}
    assert rt.calls[-2:] == [("stop", "web-1"), ("delete", "web-1")]
    assert kv.status("web-1") is None


async def test_new_generation_recreates(world: tuple[FakeKV, FakeRuntime, Reconciler]) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    rt.calls.clear()
    await assign(kv, spec("web-1", generation=2))
    await settle(r)
    assert rt.calls == [
        ("stop", "web-1"),
        ("delete", "web-1"),
        ("create", "web-1"),
        ("start", "web-1"),
    ]
    assert rt.containers["web-1"].spec.generation == 2


async def test_create_failure_is_reported_and_backed_off(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    rt.fail_create = "runc: no space left"
    await assign(kv, spec("web-1"))
    await settle(r)
    status = kv.status("web-1")
    assert status is not None and status.state == "failed" and "no space left" in status.error
    # The next passes come sooner than the backoff: no retry storm.
    assert rt.calls.count(("create", "web-1")) == 1


async def test_missing_image_names_the_node(world: tuple[FakeKV, FakeRuntime, Reconciler]) -> None:
    kv, rt, r = world
    s = spec("web-1").model_copy(update={"image": "nginx:latest"})
    await assign(kv, s)
    await settle(r)
    status = kv.status("web-1")
    assert status is not None and status.state == "failed"
    assert "nginx:latest" in status.error and NODE in status.error
    assert rt.calls == []


async def test_status_stays_until_the_container_is_really_gone(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    release = asyncio.Event()
    plain_stop = rt.stop

    async def slow_stop(name: str, timeout: float = 10.0) -> Container:  # noqa: ASYNC109
        await release.wait()
        return await plain_stop(name, timeout)

    rt.stop = slow_stop  # type: ignore[method-assign]
    await kv.delete(keyspace.assign(NODE, "web-1"))
    await r.sync_once()  # starts the removal, which now waits in stop
    await asyncio.sleep(0)
    await r.sync_once()  # a later pass must not drop the status meanwhile
    assert kv.status("web-1") is not None
    release.set()
    await settle(r)
    assert kv.status("web-1") is None and rt.containers == {}


async def test_a_moved_container_keeps_its_new_nodes_status(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    # The scheduler moves web-1 to h2, whose agent reports it before h1 is done.
    await kv.delete(keyspace.assign(NODE, "web-1"))
    moved = ContainerStatus(name="web-1", node="h2", state="running", pid=7)
    await kv.put(keyspace.status("h2", "web-1"), moved.dumps())
    await settle(r)
    assert rt.containers == {}
    assert kv.status("web-1") is None and kv.status("web-1", "h2") == moved


async def test_status_deleted_behind_our_back_is_written_again(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, _rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    await kv.delete(keyspace.status(NODE, "web-1"))
    await settle(r)
    status = kv.status("web-1")
    assert status is not None and status.state == "running"


async def test_unparseable_assignment_is_reported_invalid_once_and_others_still_run(
    world: tuple[FakeKV, FakeRuntime, Reconciler], caplog: pytest.LogCaptureFixture
) -> None:
    kv, rt, r = world
    await kv.put(keyspace.assign(NODE, "junk-1"), b"{not json")
    await kv.put(keyspace.assign(NODE, "half-1"), b'{"name": "half-1"}')
    await assign(kv, spec("web-1"))
    await settle(r)
    await settle(r)
    running = kv.status("web-1")
    assert running is not None and running.state == "running"
    junk, half = kv.status("junk-1"), kv.status("half-1")
    assert junk is not None and junk.state == "invalid" and junk.node == NODE
    assert junk.error.startswith("assignment: Invalid JSON")
    assert half is not None and half.error == "assignment: service: Field required (and 2 more)"
    assert ("create", "junk-1") not in rt.calls
    warnings = [rec for rec in caplog.records if "junk-1" in rec.getMessage()]
    assert len(warnings) == 1, warnings


async def test_running_container_survives_its_assignment_turning_to_garbage(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("web-1"))
    await settle(r)
    await kv.put(keyspace.assign(NODE, "web-1"), b"\x00garbage")
    rt.calls.clear()
    await settle(r)
    assert rt.calls == [] and rt.containers["web-1"].state is State.RUNNING
    status = kv.status("web-1")
    assert status is not None and status.state == "invalid"


async def test_spec_the_runtime_refuses_is_invalid_and_not_retried_until_changed(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    rt.refuse_create = SpecError('web-1: user "nobody:x": not a valid user')
    await assign(kv, spec("web-1"))
    for _ in range(3):
        await settle(r)
    status = kv.status("web-1")
    assert status is not None and status.state == "invalid"
    assert status.error == 'web-1: user "nobody:x": not a valid user'
    assert rt.calls.count(("create", "web-1")) == 1
    await assign(kv, spec("web-1", generation=2))   # a changed assignment is tried again
    await settle(r)
    status = kv.status("web-1")
    assert status is not None and status.state == "running" and status.generation == 2


def joiner(name: str, target: str, generation: int = 1) -> ContainerSpec:
    return ContainerSpec(name=name, service="side", node=NODE, image="busybox:latest",
                         network_mode=f"container:{target}", generation=generation)


async def test_joiner_waits_pending_for_its_target_then_joins_it(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, joiner("side-1", "db-1"))
    await settle(r)
    status = kv.status("side-1")
    assert status is not None and status.state == "pending"
    assert status.error == "container:db-1: waiting for its target"
    assert "side-1" not in rt.containers
    await assign(kv, spec("db-1"))
    await settle(r)
    await asyncio.sleep(1.1)     # the pending retry comes at most a second later
    await settle(r)
    status = kv.status("side-1")
    assert status is not None and status.state == "running" and status.error == ""
    assert rt.containers["side-1"].joined == JoinedNetns("db-1", rt.containers["db-1"].init)


async def test_joiner_is_recreated_when_its_target_is(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("db-1"))
    await settle(r)
    await assign(kv, joiner("side-1", "db-1"))
    await settle(r)
    first = rt.containers["side-1"]
    assert first.state is State.RUNNING and first.joined is not None
    rt.calls.clear()
    await assign(kv, spec("db-1", generation=2))      # the target is recreated
    await settle(r)
    target = rt.containers["db-1"]
    assert target.spec.generation == 2 and target.init != first.joined.init
    assert ("delete", "side-1") in rt.calls and ("start", "side-1") in rt.calls
    assert rt.containers["side-1"].joined == JoinedNetns("db-1", target.init)
    rt.calls.clear()
    await settle(r)             # and then it stays
    assert rt.calls == []


async def test_joiner_of_a_stopped_target_is_taken_down_and_waits(
    world: tuple[FakeKV, FakeRuntime, Reconciler],
) -> None:
    kv, rt, r = world
    await assign(kv, spec("db-1"))
    await assign(kv, joiner("side-1", "db-1"))
    await settle(r)
    await asyncio.sleep(1.1)
    await settle(r)
    assert rt.containers["side-1"].state is State.RUNNING
    rt.exit("db-1", 0)
    await settle(r)
    status = kv.status("side-1")
    assert status is not None and status.state == "pending" and "side-1" not in rt.containers


class RefusingNetwork(ContainerHooks):
    """A node whose network driver refuses the first ADD (a missing macvlan parent)."""

    def __init__(self) -> None:
        self.refusals = 1

    async def before_start(self, spec: ContainerSpec, container: Container) -> None:
        if self.refusals:
            self.refusals -= 1
            raise NetworkUnavailable("macnet", "parent interface eth9 does not exist on "
                                     "this node", delay=1.0)


async def test_a_network_refusal_leaves_it_pending_not_started_and_retried() -> None:
    kv, rt = FakeKV(), FakeRuntime()

    async def no_pull(ref: str) -> None:
        return None

    r = Reconciler(etcd=kv, runtime=rt, node=NODE, pull_image=no_pull, hooks=RefusingNetwork())
    await assign(kv, spec("mv-1"))
    await settle(r)
    status = kv.status("mv-1")
    assert status is not None and status.state == "pending"
    assert status.error == "network macnet: parent interface eth9 does not exist on this node"
    assert rt.calls == [("create", "mv-1"), ("delete", "mv-1")] and "mv-1" not in rt.containers
    await asyncio.sleep(1.1)
    await settle(r)
    status = kv.status("mv-1")
    assert status is not None and status.state == "running" and status.error == ""
