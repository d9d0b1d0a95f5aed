"""berth.aio.woken: a cancellation that arrives as the wake-up fires is never lost.

asyncio.wait_for on Python 3.11 returns normally in that case (CPython gh-86296), so a
``while True`` loop waiting with it never stops; that hung the scheduler loop test.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from berth.aio import woken

Waiter = Callable[[asyncio.Event], Awaitable[object]]


async def _stops_when_cancelled(wait: Waiter, steps: int) -> bool:
    """Cancel a wake-up loop ``steps`` loop iterations after waking it; did it stop?"""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait(event)
            event.clear()

    task = asyncio.create_task(loop())
    for _ in range(2):
        await asyncio.sleep(0)     # the loop is now waiting
    event.set()
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=1)
    if not done:                   # the cancel was swallowed: stop it for good
        task.cancel()
        await asyncio.wait([task], timeout=1)
    return bool(done) and task.cancelled()


@pytest.mark.parametrize("steps", range(5))
async def test_cancel_in_the_same_step_as_the_wake_up_stops_the_loop(steps: int) -> None:
    assert await _stops_when_cancelled(lambda e: woken(e.wait(), 60), steps)


async def test_the_race_is_real_with_wait_for_on_this_python() -> None:
    """Guards the reason for the ruff ban: if this ever passes with every step, the
    interpreter fixed wait_for (3.12+) and the ban can go."""
    results = [await _stops_when_cancelled(
        lambda e: asyncio.wait_for(e.wait(), 60), steps) for steps in range(5)]  # noqa: TID251
    if sys.version_info < (3, 12):
        assert not all(results), results


async def test_woken_reports_timeout_and_completion() -> None:
    event = asyncio.Event()
    assert await woken(event.wait(), 0.01) is False
    event.set()
    assert await woken(event.wait(), 60) is True
