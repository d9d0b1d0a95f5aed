"""``apply --wait``: poll the controller until every applied service runs, with progress."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console

from clusterctl.client import CtlError
from protos import controller_pb2, controller_pb2_grpc

POLL = 0.2


def _progress(resp: controller_pb2.GetResponse, services: list[str]) -> tuple[bool, str, str]:
    """(all running, a progress line, the latest container error if any)."""
    wanted = {s.name: s.replicas for s in resp.services if s.name in services}
    running: dict[str, int] = dict.fromkeys(services, 0)
    problem = ""
    for c in resp.containers:
        if c.service not in running:
            continue
        if c.state == "running":
            running[c.service] += 1
        elif c.error:
            problem = f"{c.name}: {c.error}"
    done = all(running[s] >= wanted.get(s, 0) for s in services) and set(wanted) == set(services)
    line = ", ".join(f"{s} {running[s]}/{wanted.get(s, '?')} running" for s in services)
    return done, line, problem


async def wait_for_services(
    stub: controller_pb2_grpc.ControllerStub, services: list[str], within: float, err: Console
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
