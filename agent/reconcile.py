"""The agent's level-triggered reconcile loop.

Each pass lists this node's assignments from etcd and the containers the runtime
finds on the host, derives actions with ``plan.plan`` and carries them out: one
container's work in order, different containers concurrently (kopf's per-object
workers). A watch on /berth/assign/<node>/ only wakes the loop; a periodic tick
notices exits that conmon recorded. Status is written back only when it changed,
and everything is re-written after a restart. Called by agent.main.

Poison pills: an assignment that does not parse, or whose spec the runtime refuses as
invalid (a UserError such as a bad image reference or user), is reported in its status
as ``invalid`` with the reason, logged once, and not retried until the assignment
changes. A container already on the host under an unparseable assignment is left as it
is: a corrupt record must not kill a running container.

Pending: a container this node cannot create yet (a PendingError: a ``container:X``
target not running here, a network driver refusing this node) is reported as
``pending`` with the reason and tried again with backoff, at most the error's own
``delay`` apart, so a joiner follows its target within a pass or two.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from agent.hooks import ContainerHooks
from agent.plan import Action, Actual, Step, plan, stale_join
from agent.ports import ContainerRuntime, KeyValue
from agent.runtime.containers import Container
from agent.runtime.errors import (
    ContainerNotFound,
    ImageNotFound,
    InvalidTransition,
    PendingError,
    SpecError,
)
from agent.runtime.netmode import InitId
from berth import keyspace, metrics
from berth.aio import woken
from berth.errors import UserError
from berth.lifecycle import RUNTIME_STATES, ContainerState
from berth.records import ContainerSpec, ContainerStatus, load_error
from berth.retry import Backoff

log = logging.getLogger(__name__)

RESYNC_PERIOD = 1.0
STOP_GRACE = 10.0          # seconds between SIGTERM and SIGKILL, as docker stop
FIRST_RETRY = 1.0          # a container whose create failed is retried after this...
MAX_BACKOFF = 30.0         # ...doubling per failure in a row, up to this

ImagePuller = Callable[[str], Awaitable[None]]


@dataclass
class _Backoff:
    delays: Backoff = field(default_factory=lambda: Backoff(FIRST_RETRY, MAX_BACKOFF))
    not_before: float = 0.0
    error: str = ""
    pending: bool = False      # waiting on something outside it, not broken


@dataclass
class Reconciler:
    etcd: KeyValue
    runtime: ContainerRuntime
    node: str
    pull_image: ImagePuller
    hooks: ContainerHooks = field(default_factory=lambda: ContainerHooks())
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _written: dict[str, ContainerStatus] = field(default_factory=dict)
    _backoff: dict[str, _Backoff] = field(default_factory=dict)
    _workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _revisit: set[str] = field(default_factory=set)
    # name -> (the spec the runtime refused, why): not retried until the spec changes.
    _refused: dict[str, tuple[ContainerSpec, str]] = field(default_factory=dict)
    # assignment key -> mod revision of an unparseable value already reported.
    _bad_keys: dict[str, int] = field(default_factory=dict)
    _revision: int = 0
    _listed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Pass after pass until cancelled; an unexpected error just means another pass."""
        while True:
            self._wake.clear()
            try:
                with metrics.reconcile_pass("agent"):
                    await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; full resync next pass")
                self._written.clear()
            await woken(self._wake.wait(), RESYNC_PERIOD)

    async def watch(self) -> None:
        """Turn assignment changes into wake-ups; the pass itself re-reads everything."""
        prefix = keyspace.assign_prefix(self.node)
        await self._listed.wait()
        async for _event in self.etcd.watch_prefix(prefix, start_revision=self._revision + 1):
            self.wake()

    async def sync_once(self) -> None:
        listing = await self.etcd.get_prefix(keyspace.assign_prefix(self.node))
        if not self._listed.is_set():
            self._revision = listing.revision
            self._listed.set()
        desired: dict[str, ContainerSpec] = {}
        unreadable: set[str] = set()
        for value, meta in listing.items:
            name = keyspace.last_segment(meta.key)
            try:
                desired[name] = ContainerSpec.loads(value)
            except ValidationError as exc:
                unreadable.add(name)
                await self._unreadable(name, meta.key, meta.mod_revision, exc)
        self._forget_bad_keys({meta.key for _, meta in listing.items})
        found = await self.runtime.list()
        metrics.set_containers("agent", [str(c.state) for c in found],
                               known=map(str, RUNTIME_STATES))
        present = {c.name for c in found}
        names = (set(desired) | present) - unreadable
        for name in sorted(names):
            worker = self._workers.get(name)
            if worker is not None and not worker.done():
                self._revisit.add(name)  # still busy: look again when it finishes
                continue
            worker = asyncio.create_task(self._carry_out(name, desired.get(name)), name=name)
            worker.add_done_callback(self._worker_done)
            self._workers[name] = worker
        # A container still on the host keeps its status until its worker removed it.
        await self._delete_orphan_statuses(set(desired) | present | unreadable)

    async def _unreadable(self, name: str, key: str, revision: int, exc: ValidationError) -> None:
        reason = f"assignment: {load_error(exc)}"
        if self._bad_keys.get(key) != revision:
            log.warning("container %s: skipping invalid assignment %s: %s", name, key, reason)
            self._bad_keys[key] = revision
        await self._write_status(ContainerStatus(
            name=name, node=self.node, state="invalid", error=reason))

    def _forget_bad_keys(self, listed: set[str]) -> None:
        for key in set(self._bad_keys) - listed:
            del self._bad_keys[key]

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        name = task.get_name()
        if self._workers.get(name) is task:
            del self._workers[name]
        if name in self._revisit:
            self._revisit.discard(name)
            self.wake()

    async def _carry_out(self, name: str, want: ContainerSpec | None) -> None:
        """One container's work, planned from facts read now, not when the pass listed.

        Each container has at most one worker at a time (kopf's per-object queue), so a
        slow create or image pull never holds up other containers.
        """
        try:
            have = await self.runtime.state(name)
        except ContainerNotFound:
            have = None
        actual = {name: await self._actual(have)} if have else {}
        for action in plan({name: want} if want else {}, actual):
            if action.step is Step.RECREATE and have and have.joined and stale_join(actual[name]):
                log.info("container %s: container %s no longer runs the init whose netns "
                         "it joined; recreating it", name, have.joined.container)
            try:
                await self._act(action, have.spec if have else None)
            except asyncio.CancelledError:
                raise
            except PendingError as exc:
                if action.spec is None:
                    raise
                self._note_failure(name, exc, pending=True)
                await self._write_status(self._failed_status(action.spec))
            except UserError as exc:
                if action.spec is None:
                    raise
                # The runtime refuses this spec: retrying the same one cannot help.
                log.warning("container %s: invalid, not retried until its assignment "
                            "changes: %s", name, exc)
                self._refused[name] = (action.spec, str(exc))
                await self._write_status(self._invalid_status(action.spec))
            except Exception as exc:
                log.exception("container %s: %s failed", name, action.step.value)
                if action.spec is not None:
                    self._note_failure(name, exc)
                    await self._write_status(self._failed_status(action.spec))

    async def _actual(self, have: Container) -> Actual:
        target = None
        if have.joined is not None:
            target = await self._running_init(have.joined.container)
        return Actual(have.name, have.state, have.spec, bool(have.started_at),
                      joined=have.joined, target=target)

    async def _running_init(self, name: str) -> InitId | None:
        try:
            return (await self.runtime.state(name)).init
        except (ContainerNotFound, SpecError):
            return None

    async def _act(self, action: Action, have: ContainerSpec | None) -> None:
        if action.step is Step.DELETE:
            await self._delete(action.name, have)
            return
        assert action.spec is not None
        if action.step is Step.RECREATE:
            await self._delete(action.name, have, keep_status=True)
        if action.step in (Step.CREATE, Step.RECREATE):
            refused = self._refused.get(action.name)
            if refused is not None and refused[0] == action.spec:
                await self._write_status(self._invalid_status(action.spec))
                return
            self._refused.pop(action.name, None)
            if not self._may_try(action.name):
                return
            await self._create(action.spec)
        container = await self.runtime.state(action.name)
        if container.state is ContainerState.RUNNING:
            await self.hooks.ensure_running(action.spec, container)
        else:
            await self.hooks.on_stopped(action.spec)
        await self._write_status(self._status_of(action.spec, container))

    async def _create(self, spec: ContainerSpec) -> None:
        if not self.runtime.images.has(spec.image):
            await self.pull_image(spec.image)
            if not self.runtime.images.has(spec.image):
                raise ImageNotFound(f"image {spec.image!r} is not available on node {self.node}")
        container = await self.runtime.create(spec)
        try:
            await self.hooks.before_start(spec, container)
            await self.runtime.start(spec.name)
        except BaseException:
            try:
                await self.hooks.before_delete(spec.name, spec)
            finally:
                await self.runtime.delete(spec.name)
            raise
        self._backoff.pop(spec.name, None)

    async def _delete(
        self, name: str, have: ContainerSpec | None, *, keep_status: bool = False
    ) -> None:
        """Withdraw the names first, then stop gracefully, then tear down (Kubernetes' order)."""
        if have is not None:
            await self.hooks.on_stopped(have)
        try:
            await self.runtime.stop(name, STOP_GRACE)
        except (ContainerNotFound, InvalidTransition):
            pass
        await self.hooks.before_delete(name, have)
        await self.runtime.delete(name)
        self._backoff.pop(name, None)
        if not keep_status:
            self._refused.pop(name, None)
            # Our own key: another node running the same name writes under its own prefix.
            await self.etcd.delete(keyspace.status(self.node, name))
            self._written.pop(name, None)

    def _may_try(self, name: str) -> bool:
        b = self._backoff.get(name)
        return b is None or time.monotonic() >= b.not_before

    def _note_failure(self, name: str, exc: Exception, *, pending: bool = False) -> None:
        b = self._backoff.setdefault(name, _Backoff())
        wait = b.delays.failed()
        if pending and isinstance(exc, PendingError):
            wait = min(wait, max(FIRST_RETRY, exc.delay))
            if b.error != str(exc):
                log.info("container %s: pending: %s", name, exc)
        b.not_before = time.monotonic() + wait
        b.error = str(exc) or type(exc).__name__
        b.pending = pending

    def _failed_status(self, spec: ContainerSpec) -> ContainerStatus:
        b = self._backoff.get(spec.name, _Backoff())
        return ContainerStatus(
            name=spec.name,
            node=self.node,
            state="pending" if b.pending else "failed",
            error=b.error,
            generation=spec.generation,
        )

    def _invalid_status(self, spec: ContainerSpec) -> ContainerStatus:
        return ContainerStatus(name=spec.name, node=self.node, state="invalid",
                               error=self._refused[spec.name][1], generation=spec.generation)

    def _status_of(self, spec: ContainerSpec, c: Container) -> ContainerStatus:
        if c.state is not ContainerState.RUNNING and spec.name in self._backoff:
            return self._failed_status(spec)
        networks = {a.network: a.ip for a in spec.networks if a.ip}
        return ContainerStatus(
            name=spec.name,
            node=self.node,
            state=c.state,
            pid=c.pid or 0,
            exit_code=c.exit_code,
            started_at=c.started_at or "",
            finished_at=c.finished_at or "",
            error=c.error or "",
            networks=networks,
            generation=spec.generation,
        )

    async def _write_status(self, status: ContainerStatus) -> None:
        if self._written.get(status.name) == status:
            return
        await self.etcd.put(keyspace.status(self.node, status.name), status.dumps())
        self._written[status.name] = status

    async def _delete_orphan_statuses(self, keep: set[str]) -> None:
        """Drop this node's status keys for containers neither assigned nor present.

        The same listing keeps the "already written" cache honest: an entry whose key
        is gone is forgotten, so the next pass rewrites it.
        """
        listing = await self.etcd.get_prefix(keyspace.status_prefix(self.node))
        ours: set[str] = set()
        for _value, meta in listing.items:
            name = keyspace.last_segment(meta.key)
            ours.add(name)
            if name not in keep:
                await self.etcd.delete(meta.key)
                self._written.pop(name, None)
        for name in set(self._written) - ours:
            del self._written[name]
