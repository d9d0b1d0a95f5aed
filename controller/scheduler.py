"""The scheduler loop: keeps /berth/assign/ in line with desired services and Ready nodes.

Started by main.py next to the gRPC server. Level-triggered: watches on
/berth/desired/ and /berth/nodes/ only wake it (and /berth/status/, but only for the
containers that a ``network_mode`` joiner waits on to run); every pass re-reads the whole
state (state.read_state), asks placement.plan for actions and writes each one
in its own guarded transaction:

- create: the assignment key must not exist (create-if-absent) and the
  service's desired key must be unchanged since the read;
- update/remove: the assignment's mod revision must be unchanged.

A failed guard just means the world moved: the next pass sees the new state.
Any error (etcd unavailable included) marks the next pass as a full resync
(watches are re-established from a fresh listing) after a back-off that doubles
up to MAX_BACKOFF; the loop never ends because etcd was away, since the daemon
exits when it does. Passes never overlap: there is one loop task.

Networks: before placing, vni.reconcile gives every overlay network its VNI.
Every create/update carries its IP allocations (ipam.resolve) in the SAME
transaction as the assignment: claims guarded create-if-absent, so a lost
race leaks nothing and an address is never handed out twice; a claim that
loses to another container's is retried with the next free address. A
remove releases the container's addresses and deletes its endpoints (a dead
node's agent cannot). Kept assignments whose attachments are incomplete or
whose allocations went missing are repaired. Finally, allocations and
endpoints nothing uses any more are collected (level-triggered: "an agent
restart leaks nothing").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from berth import keyspace, metrics
from berth.aio import woken
from berth.errors import TemporaryError
from berth.etcd import DeleteEvent, KeyValue, Listing, PutEvent, txn
from berth.lifecycle import ContainerState
from berth.limits import DEFAULT_LIMITS, Limits
from berth.records import ContainerSpec
from berth.retry import Backoff
from controller import vni
from controller.ipam import AddressBook, AddressError, orphans, resolve, static_ips
from controller.placement import Assignment, Create, Plan, Remove, Update, plan
from controller.state import ClusterState, read_state

log = logging.getLogger(__name__)

RESYNC_INTERVAL = 30.0     # a pass even without events: a safety net, not the mechanism
ERROR_BACKOFF = 1.0        # first retry after a failed pass; doubles per failure...
MAX_BACKOFF = 10.0         # ...up to this, so a returning etcd is noticed soon
CLAIM_ATTEMPTS = 5         # a claim lost to another container's: retry with fresh addresses


@dataclass(frozen=True)
class _Write:
    """One assignment to write with its addresses: a create, an update or a repair."""

    spec: ContainerSpec
    guards: list[txn.Compare]            # the assignment's own (create-if-absent / mod)
    previous: ContainerSpec | None = None   # set for repairs: skip when nothing changes


class Scheduler:
    def __init__(self, etcd: KeyValue, limits: Limits = DEFAULT_LIMITS) -> None:
        self._etcd = etcd
        self.limits = limits
        self._wake = asyncio.Event()
        self.passes = 0
        self.last_plan: Plan | None = None
        # Containers that a network_mode joiner waits on: their status changes wake a pass.
        self._awaited: frozenset[str] = frozenset()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Run passes until cancelled; errors (etcd outages too) are retried, not raised."""
        resync = True
        retry = Backoff(ERROR_BACKOFF, MAX_BACKOFF)
        watchers: list[asyncio.Task[None]] = []
        try:
            while True:
                try:
                    if resync or any(w.done() for w in watchers):
                        watchers = await self._restart_watches(watchers)
                        resync = False
                    await self.run_pass()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    delay = retry.failed()
                    _log_failure(exc, retry.failures, delay)
                    resync = True
                    await asyncio.sleep(delay)
                    continue
                if retry.failures:
                    log.info("scheduler recovered after %d failed attempts", retry.failures)
                    retry.succeeded()
                await woken(self._wake.wait(), RESYNC_INTERVAL)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _restart_watches(
        self, old: list[asyncio.Task[None]]
    ) -> list[asyncio.Task[None]]:
        ended = [t for t in old if t.done()]
        for task in old:
            task.cancel()
        await asyncio.gather(*old, return_exceptions=True)
        for task in ended:
            error = None if task.cancelled() else task.exception()
            log.warning("%s ended (%s); watching again", task.get_name(), error or "no error")
        old.clear()     # in place: if the listing below fails, nothing is reported twice
        if ended:
            await asyncio.sleep(ERROR_BACKOFF)      # a watch that keeps dying must not spin
        # Start from the current revision so nothing between the listing in the
        # next pass and the watch registration can be missed.
        revision = (await self._etcd.get_prefix(keyspace.NODES)).revision
        return [asyncio.create_task(self._watch(prefix, revision + 1), name=f"watch {prefix}")
                for prefix in (keyspace.DESIRED, keyspace.NODES, keyspace.STATUS)]

    async def _watch(self, prefix: str, start: int) -> None:
        try:
            async for event in self._etcd.watch_prefix(prefix, start_revision=start):
                if prefix == keyspace.STATUS and isinstance(event, PutEvent | DeleteEvent) \
                        and keyspace.last_segment(event.key) not in self._awaited:
                    continue
                self._wake.set()
        finally:
            # A watch that gave up must not leave the loop blind until the next resync:
            # the woken pass sees it done and re-establishes the watches.
            self._wake.set()

    async def run_pass(self) -> Plan:
        """One full pass: read, decide, write. Returns what it decided."""
        with metrics.reconcile_pass("controller"):
            return await self._pass()

    async def _pass(self) -> Plan:
        self._wake.clear()
        state = await read_state(self._etcd)
        # Containers by the state their agents report; assigned ones with no report yet
        # are pending, as `get containers` shows them.
        reported = [s.state for s in state.statuses.values()]
        unreported = sum(1 for a in state.assignments if a.spec.name not in state.statuses)
        metrics.set_containers("controller", reported + ["pending"] * unreported,
                               known=[str(s) for s in ContainerState])
        if await vni.reconcile(self._etcd, state.networks, state.network_revisions,
                               state.vnis):
            state = await read_state(self._etcd)
        decided = plan(state.services, state.networks, state.nodes, state.assignments,
                       self.limits, state.statuses)
        self._awaited = frozenset(decided.awaited)
        for service, reason in sorted(decided.invalid.items()):
            log.warning("service %s is invalid and skipped: %s", service, reason)
        writer = _PassWriter(self._etcd, state, decided)
        lost = await writer.write_all()
        for container, reason in sorted(decided.pending.items()):
            log.info("container %s pending: %s", container, reason)
        if lost:
            # Someone else moved first; look again rather than trust this plan.
            log.info("scheduler: %d guarded writes lost a race; re-running", lost)
            self._wake.set()
        self.passes += 1
        self.last_plan = decided
        return decided


class _PassWriter:
    """The writes of one pass, sharing one AddressBook kept current with its own claims."""

    def __init__(self, etcd: KeyValue, state: ClusterState, decided: Plan) -> None:
        self._etcd = etcd
        self._state = state
        self._plan = decided
        self._book = AddressBook.of(state.allocations)
        self._vnis = state.vnis.assignments()

    async def write_all(self) -> int:
        """Removes, creates, updates, repairs, then collection; returns lost races."""
        decided, lost = self._plan, 0
        recreated = {c.spec.name for c in decided.creates}
        removed = {(r.node, r.container) for r in decided.removes}
        survivors = {a.spec.name for a in self._state.assignments
                     if (a.node, a.spec.name) not in removed}
        for remove in decided.removes:
            release = remove.container not in survivors | recreated
            lost += not await self._remove(remove, release)
        for create in list(decided.creates):
            lost += not await self._create(create)
        updated = {u.spec.name for u in decided.updates}
        for update in decided.updates:
            lost += not await self._update(update)
        for current in self._state.assignments:
            if (current.node, current.spec.name) not in removed and \
                    current.spec.name not in updated:
                lost += not await self._repair(current)
        # Only containers with no assignment at all (a failed remove keeps its addresses).
        await self._collect({a.spec.name for a in self._state.assignments} | recreated)
        return lost

    def _service_guard(self, service: str, revision: int) -> txn.Compare:
        return txn.mod(keyspace.desired("Service", service)) == revision

    async def _create(self, action: Create) -> bool:
        key = keyspace.assign(action.spec.node, action.spec.name)
        guards = [txn.version(key) == 0,
                  self._service_guard(action.spec.service, action.service_revision)]
        outcome = await self._place(_Write(action.spec, guards))
        if isinstance(outcome, str):
            # Not placeable after all: show why, like a missing node.
            self._plan.creates.remove(action)
            self._plan.pending[action.spec.name] = outcome
            return True
        if outcome:
            log.info("assigned %s to node %s", action.spec.name, action.spec.node)
        return outcome

    async def _update(self, action: Update) -> bool:
        key = keyspace.assign(action.spec.node, action.spec.name)
        guards = [txn.mod(key) == action.mod_revision,
                  self._service_guard(action.spec.service, action.service_revision)]
        outcome = await self._place(_Write(action.spec, guards))
        if isinstance(outcome, str):
            log.warning("cannot update %s: %s", action.spec.name, outcome)
            return True
        if outcome:
            log.info("updated %s on node %s to generation %d", action.spec.name,
                     action.spec.node, action.spec.generation)
        return outcome

    async def _repair(self, current: Assignment) -> bool:
        """Fill or re-claim a kept assignment's addresses; a no-op when all is in order."""
        key = keyspace.assign(current.node, current.spec.name)
        outcome = await self._place(_Write(current.spec, [txn.mod(key) == current.mod_revision],
                                           previous=current.spec))
        if isinstance(outcome, str):
            log.warning("cannot repair the addresses of %s: %s", current.spec.name, outcome)
            return True
        return outcome

    async def _place(self, write: _Write) -> bool | str:
        """Resolve addresses and write them with the assignment.

        Returns True (written or nothing to do), False (an assignment guard failed: the
        world moved) or the reason no address can be given.
        """
        key = keyspace.assign(write.spec.node, write.spec.name)
        service = self._state.services.get(write.spec.service)
        statics = static_ips(service.doc if service else None)
        for _attempt in range(CLAIM_ATTEMPTS):
            try:
                res = resolve(write.spec, self._state.networks, self._vnis, self._book, statics,
                              self._state.nodes)
            except AddressError as exc:
                return str(exc)
            spec = res.spec
            puts: list[txn.Op] = [txn.put(key, spec.dumps())]
            if write.previous is not None:
                if spec == write.previous and not (res.claims or res.releases):
                    return True
                if spec == write.previous:
                    puts = []       # only the allocations need fixing
                else:
                    spec = spec.model_copy(update={"generation": write.previous.generation + 1})
                    puts = [txn.put(key, spec.dumps())]
            nets = sorted({a.network for a in spec.networks} | set(res.networks))
            ok, responses = await self._etcd.transaction(
                [*write.guards, *res.compares()], [*res.ops(), *puts, txn.get(key)],
                [*(txn.get(g.key) for g in write.guards),
                 *(txn.get_prefix(keyspace.ipam_prefix(n)) for n in nets)])
            if ok:
                self._book.record(res, responses[-1].revision if responses[-1] else 0)
                return True
            listings = [r for r in responses if isinstance(r, Listing)]
            if not all(_holds(g, lst) for g, lst in zip(write.guards, listings, strict=False)):
                return False
            for net, listing in zip(nets, listings[len(write.guards):], strict=True):
                self._book.refresh(net, listing)
        return False

    async def _remove(self, action: Remove, release: bool) -> bool:
        key = keyspace.assign(action.node, action.container)
        held = self._book.held_by(action.container) if release else []
        # Endpoints are normally withdrawn by the agent; a dead node's never will be.
        endpoints = [e.key for e in self._state.endpoint_keys
                     if e.container == action.container and e.node == action.node]
        ok, _ = await self._etcd.transaction(
            [txn.mod(key) == action.mod_revision,
             *(txn.mod(a.key) == a.mod_revision for a in held)],
            [txn.delete(key), *(txn.delete(a.key) for a in held),
             *(txn.delete(k) for k in endpoints)])
        if ok:
            self._book.release(held)
            log.info("unassigned %s from node %s%s", action.container, action.node,
                     f" (released {', '.join(a.ip for a in held)})" if held else "")
        return ok

    async def _collect(self, live: set[str]) -> None:
        """Delete allocations and endpoints nothing uses; guarded, so never a live one."""
        for alloc in orphans(self._book, live, self._state.networks):
            ok, _ = await self._etcd.transaction([txn.mod(alloc.key) == alloc.mod_revision],
                                                 [txn.delete(alloc.key)])
            if ok:
                log.info("released %s on %s (held by %s, which has no assignment)",
                         alloc.ip, alloc.network, alloc.container)
        placed = {(a.spec.name, a.node) for a in self._state.assignments}
        for ep in self._state.endpoint_keys:
            if (ep.container, ep.node) in placed:
                continue
            ok, _ = await self._etcd.transaction([txn.mod(ep.key) == ep.mod_revision],
                                                 [txn.delete(ep.key)])
            if ok:
                log.info("deleted stale endpoint %s", ep.key)
        for key, revision in sorted(self._state.stray_keys.items()):
            ok, _ = await self._etcd.transaction([txn.mod(key) == revision], [txn.delete(key)])
            if ok:
                log.info("deleted %s: not a per-node status or endpoint key", key)


def _log_failure(exc: Exception, failures: int, delay: float) -> None:
    if isinstance(exc, TemporaryError):
        # Expected while etcd is away: one line per attempt, no traceback.
        log.warning("scheduler pass failed (attempt %d): %s; retrying in %.0fs",
                    failures, exc, delay)
    else:
        log.exception("scheduler pass failed (attempt %d); full resync in %.0fs",
                      failures, delay)


def _holds(guard: txn.Compare, listing: Listing) -> bool:
    """Whether an assignment guard (version == 0, or mod == N) holds for a fresh read."""
    if guard.target == "version":
        return not listing.items
    return bool(listing.items) and listing.items[0][1].mod_revision == guard.operand
