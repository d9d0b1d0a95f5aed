"""``clusterctl netcheck [NETWORK]``: probe every pair of containers on each network.

Called by clusterctl.main. One Controller.NetCheck call lists each network's running
containers and every node's facts about it (read before any probe: see
clusterctl.netdiagnosis). netcheck then picks the containers to probe (netmodel.select),
and from each one execs a single busybox script (netprobe) through the controller, as
``clusterctl exec`` does, probing all of its peers at once; sources run in parallel, at
most ``PARALLEL`` at a time. The verdict and diagnosis of every cell are pure
(netdiagnosis); rendering is netreport's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from clusterctl.client import Where, connect
from clusterctl.netdiagnosis import Cell, Status, judge, target
from clusterctl.netmodel import Member, Network, network_from_proto, select
from clusterctl.netprobe import Probe, Target, argv, exec_timeout, missing, parse
from protos import common_pb2, controller_pb2_grpc, netcheck_pb2

PARALLEL = 8                        # execs in flight at once
MAX_OUTPUT = 1 << 20                # a probe line is short; more than this is not ours


@dataclass(frozen=True)
class NetReport:
    network: Network
    chosen: tuple[Member, ...]
    cells: tuple[Cell, ...]
    note: str = ""                  # why nothing was probed, when nothing was

    @property
    def ok(self) -> bool:
        return all(c.status in (Status.OK, Status.SKIP) for c in self.cells)


@dataclass(frozen=True)
class Report:
    networks: tuple[NetReport, ...]

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.networks)


@dataclass(frozen=True)
class Outcome:
    """What one source's exec gave: its probes, or why it could not run them."""

    probes: tuple[Probe, ...] | None
    error: str = ""


Progress = Callable[[str], None]


async def probe(stub: controller_pb2_grpc.ControllerAsyncStub, container: str,
                targets: list[Target]) -> Outcome:
    """Run the probe script in ``container``; a failure is an Outcome, not an exception."""
    req = common_pb2.ExecRequest(container=container, argv=argv(targets))
    out, err, code = bytearray(), bytearray(), None
    deadline = exec_timeout(targets)
    try:
        async for frame in stub.Exec(req, timeout=deadline):
            which = frame.WhichOneof("frame")
            if which == "stdout" and len(out) < MAX_OUTPUT:
                out += frame.stdout
            elif which == "stderr" and len(err) < MAX_OUTPUT:
                err += frame.stderr
            elif which == "exit_code":
                code = frame.exit_code
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(None, f"the probes did not finish within {deadline:.0f} s")
        return Outcome(None, exc.details() or exc.code().name)
    if code in (126, 127):
        return Outcome(None, f"the image cannot run the probes (sh exited {code}: "
                             f"{bytes(err).decode(errors='replace').strip()[:200]})")
    probes = tuple(parse(bytes(out).decode(errors="replace")))
    lost = missing(targets, probes)
    if lost and not probes:
        return Outcome(None, f"the probes printed nothing (exit status {code})")
    return Outcome(probes)


def _plan(net: Network) -> tuple[list[Member], dict[str, list[Target]], str]:
    chosen = select(net)
    if len(chosen) < 2:
        return chosen, {}, "fewer than two running containers: nothing to check"
    jobs: dict[str, list[Target]] = {}
    for src in chosen:
        targets = [t for dst in chosen if dst is not src
                   if (t := target(net, src, dst)) is not None]
        if targets:
            jobs[src.container] = targets
    if not jobs:
        return chosen, {}, f"no pair is expected to connect ({net.expectation.why})"
    return chosen, jobs, ""


async def check(controller: Where, network: str | None,
                progress: Progress = lambda _: None) -> Report:
    async with connect(controller) as stub:
        resp = await stub.NetCheck(netcheck_pb2.NetCheckRequest(network=network or ""))
        nets = [network_from_proto(n) for n in resp.networks]
        plans = [_plan(net) for net in nets]
        limit = asyncio.Semaphore(PARALLEL)

        async def run(container: str, targets: list[Target]) -> Outcome:
            async with limit:
                return await probe(stub, container, targets)

        work = [(i, src, targets) for i, (_, jobs, _) in enumerate(plans)
                for src, targets in jobs.items()]
        progress(f"probing from {len(work)} containers on {len(nets)} networks")
        outcomes = await asyncio.gather(*(run(src, targets) for _, src, targets in work))
    by_source = {(i, src): o for (i, src, _), o in zip(work, outcomes, strict=True)}
    reports = []
    for i, (net, (chosen, _jobs, note)) in enumerate(zip(nets, plans, strict=True)):
        cells = []
        for src in chosen:
            outcome = by_source.get((i, src.container), Outcome(()))
            for dst in chosen:
                if dst is not src:
                    cells.append(judge(net, src, dst, outcome.probes, outcome.error))
        reports.append(NetReport(net, tuple(chosen), tuple(cells), note))
    return Report(tuple(reports))
