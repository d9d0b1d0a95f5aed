"""Small asyncio helpers that every daemon loop shares.

Why not ``asyncio.wait_for``: on Python 3.11 (Debian 12's), ``wait_for`` runs the awaited
thing as a separate task. When the caller is cancelled in the same loop step as that task
finishes, ``wait_for`` returns the result and the cancellation is lost (CPython gh-86296,
fixed in 3.12, whose ``wait_for`` is built on ``asyncio.timeout``). A ``while True`` loop
that waits for a wake-up with it then never stops: that is what hung
``test_scheduler_loop_reacts_to_apply_and_new_nodes`` when the test cancelled the scheduler
just as a watch event woke it. ``asyncio.timeout`` awaits in the caller's own task, so a
cancel is never swallowed. ruff bans ``asyncio.wait_for`` in this repository.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def woken(wake: Awaitable[object], within: float | None) -> bool:
    """Await ``wake`` for at most ``within`` seconds (None: no limit): True if it finished,
    False if not.

    A cancellation of the caller always propagates, even one that arrives as ``wake``
    finishes.
    """
    try:
        async with asyncio.timeout(within):
            await wake
    except TimeoutError:
        return False
    return True
