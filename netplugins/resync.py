"""The loop every NetworkHost runs: level-triggered passes on wake-ups and on a timer.

A pass repairs the host to what it should be, whatever happened before, so losing a
wake-up costs at most one interval. A failed pass is retried after ``retry_delay``,
doubling up to the interval; a pass never ends the loop, only cancellation does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from berth.aio import woken
from berth.retry import Backoff

log = logging.getLogger(__name__)

# One pass; its argument says whether the timer (not a wake-up) started it.
Pass = Callable[[bool], Awaitable[None]]


async def resync_forever(
    what: str, one_pass: Pass, wake: Callable[[], Awaitable[object]] | None,
    interval: float, retry_delay: float,
) -> None:
    """Run ``one_pass`` now, on every ``wake()`` and at least every ``interval`` seconds,
    until cancelled. ``wake`` None: the timer alone."""
    retry = Backoff(retry_delay, interval)
    periodic = False
    while True:
        try:
            await one_pass(periodic)
            delay = interval
            retry.succeeded()
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = retry.failed()
            log.exception("%s: pass failed; retrying in %.1fs", what, delay)
        if wake is None:
            await asyncio.sleep(delay)
            periodic = True
            continue
        try:
            periodic = not await woken(wake(), delay)
        except Exception:
            log.exception("%s: wake-up source failed; resyncing in %.1fs", what, delay)
            await asyncio.sleep(delay)
            periodic = True
