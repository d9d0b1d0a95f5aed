"""``apply --wait``: poll the controller until every applied service has rolled out.

Called by clusterctl.main. A container counts once it runs the generation the
controller is rolling out (``observed_generation == generation``): an old
container still running after a spec change does not. A container that failed or
exited at that generation keeps the wait going (the agent retries it) and its
error is shown, so a broken change times out with the reason instead of "success".
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console

from clusterctl.client import CtlError
from protos import controller_pb2, controller_pb2_grpc

POLL = 0.2
BROKEN = frozenset({"failed", "exited"})


def _rolled_out(c: controller_pb2.Container) -> bool:
    return c.state == "running" and c.generation > 0 and c.observed_generation == c.generation


def _problem(c: controller_pb2.Container) -> str:
    """Why ``c`` is not done, when there is something to say."""
    current = c.generation > 0 and c.observed_generation == c.generation
    if current and c.state in BROKEN:
        reason = c.error or (f"exited with code {c.exit_code}" if c.HasField("exit_code")
                             else c.state)
        return f"{c.name}: {c.state}: {reason}"
    return f"{c.name}: {c.error}" if c.error else ""


def _progress(resp: controller_pb2.GetResponse, services: list[str]) -> tuple[bool, str, str]:
    """(all rolled out, a progress line, the latest container error if any)."""
    wanted = {s.name: s.replicas for s in resp.services if s.name in services}
    running: dict[str, int] = dict.fromkeys(services, 0)
    problem = ""
    for c in resp.containers:
        if c.service not in running:
            continue
        if _rolled_out(c):
            running[c.service] += 1
        elif found := _problem(c):
            problem = found
    done = all(running[s] >= wanted.get(s, 0) for s in services) and set(wanted) == set(services)
    line = ", ".join(f"{s} {running[s]}/{wanted.get(s, '?')} running" for s in services)
    return done, line, problem


async def wait_for_services(
    stub: controller_pb2_grpc.ControllerAsyncStub, services: list[str], within: float, err: Console
) -> None:
    deadline = time.monotonic() + within
    line = problem = ""
    with err.status("waiting") as status:
        while time.monotonic() < deadline:
            svc = await stub.Get(controller_pb2.GetRequest(kind="services"))
            ctr = await stub.Get(controller_pb2.GetRequest(kind="containers"))
            merged = controller_pb2.GetResponse(services=svc.services, containers=ctr.containers)
            done, line, problem = _progress(merged, services)
            status.update(line + (f" ({problem})" if problem else ""))
            if done:
                err.print(line, highlight=False)
                return
            await asyncio.sleep(POLL)
    raise CtlError(
        f"timed out after {within:.0f}s: {line}" + (f"; last error: {problem}" if problem else "")
    )
