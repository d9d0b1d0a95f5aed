"""Suite-wide set-up: a private clusterctl config, and what every asyncio task awaits
when a test runs too long.

clusterctl's contexts file is ``BERTH_CONFIG``; each run gets its own (a temporary
file removed at the end), so a test run never reads nor changes the contexts of the
person running it, and two runs never select each other's labs. ``BERTH_CONTEXT`` and
``BERTH_CONTROLLER`` from the caller's shell are dropped for the same reason.

pytest-timeout's dump shows threads, and a loop that is idle shows only ``select``:
it cannot say which await never finished. Before the hard timeout, this watchdog
asks the running loop (from another thread) to print every task's stack, so a hang
names the coroutine and the await it is stuck in.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator

import pytest

_CONFIG_DIR: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if not _CONFIG_DIR:
        _CONFIG_DIR.append(tempfile.mkdtemp(prefix="berth-test-config-"))
    os.environ["BERTH_CONFIG"] = os.path.join(_CONFIG_DIR[0], "config")
    os.environ.pop("BERTH_CONTEXT", None)
    os.environ.pop("BERTH_CONTROLLER", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _CONFIG_DIR:
        shutil.rmtree(_CONFIG_DIR.pop(), ignore_errors=True)


def _dump_after(config: pytest.Config) -> float:
    """Half of pytest-timeout's limit, so the dump comes while the test still runs."""
    limit = config.getoption("timeout", None) or config.getini("timeout") or 600
    return float(limit) / 2


def _dump_tasks(nodeid: str, after: float) -> None:
    tasks = asyncio.all_tasks()
    print(f"\n=== {nodeid}: still running after {after:.0f}s; "
          f"{len(tasks)} asyncio tasks ===", file=sys.stderr)
    for task in tasks:
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    # Another thread cannot ask for "the running loop"; look for it. Only done when a
    # test already overran, so the cost does not matter.
    return [o for o in gc.get_objects()
            if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]


@pytest.fixture(autouse=True)
def _hang_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    after = _dump_after(request.config)

    def fire() -> None:
        for loop in _running_loops():
            loop.call_soon_threadsafe(_dump_tasks, request.node.nodeid, after)

    timer = threading.Timer(after, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
