"""Waiting for processes we did not fork (container inits, conmon) without polling.

``timeout`` parameters (not asyncio.timeout) because the Docker-shaped API has them.

containers.Runtime uses ``wait_pid``: a pidfd becomes readable when the process
exits, which asyncio can watch like a socket.
"""

from __future__ import annotations

import asyncio
import os

from agent.runtime.state import pid_alive
from berth.aio import woken


async def wait_pid(pid: int, start_time: int, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait until ``pid`` (the process that had ``start_time``) is gone; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        # Checked after opening: the fd now pins this pid, so no reuse can fool us.
        if not pid_alive(pid, start_time):
            return True
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, on_exit)
        try:
            return await woken(exited, timeout)
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
