"""netplugins.resync.resync_forever: passes on wake-ups and on the timer; failures retry."""

from __future__ import annotations

import asyncio

from netplugins.resync import resync_forever


async def test_passes_say_what_started_them_and_a_failure_does_not_end_the_loop() -> None:
    seen: list[bool] = []
    wake = asyncio.Event()
    first = asyncio.Event()
    done = asyncio.Event()

    async def one_pass(periodic: bool) -> None:
        seen.append(periodic)
        first.set()
        if len(seen) == 2:
            raise RuntimeError("a broken pass")
        if len(seen) == 5:
            done.set()

    async def wait_wake() -> None:
        await wake.wait()
        wake.clear()

    task = asyncio.create_task(resync_forever("test", one_pass, wait_wake, 0.5, 0.01))
    try:
        async with asyncio.timeout(10):
            await first.wait()
            wake.set()                  # pass 2: woken, and it fails
            await done.wait()           # 3: the retry (timer); 4, 5: the timer again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[:5] == [False, False, True, True, True]
    assert task.cancelled()


async def test_without_a_wake_source_the_timer_alone_drives_it() -> None:
    seen: list[bool] = []
    three = asyncio.Event()

    async def one_pass(periodic: bool) -> None:
        seen.append(periodic)
        if len(seen) == 3:
            three.set()

    task = asyncio.create_task(resync_forever("test", one_pass, None, 0.01, 0.01))
    try:
        async with asyncio.timeout(10):
            await three.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[:3] == [False, True, True]
