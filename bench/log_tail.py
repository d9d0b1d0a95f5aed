"""``logs --tail`` over a full set of rotated logs: time and memory against a whole read.

Writes 5 files of 20 MiB in conmon's k8s-file format (Docker's `local` defaults, as
the agent keeps them), then measures in one run the median wall time and the peak of
Python allocations of ``read_logs(tail=3)`` and of reading every entry. A tail that
reads from the end costs the same whatever the log size: the ratio tail/whole should
stay far below 0.01, and the tail's peak memory below 1 MiB.

    .venv/bin/python bench/log_tail.py [-n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from agent.runtime.logrotate import DEFAULT_LIMITS, LOG_NAME, rotated_name
from agent.runtime.logs import read_logs

STAMP = "2026-01-01T00:00:00.000000001+00:00"


def write_logs(directory: Path) -> None:
    line = f"{STAMP} stdout F " + "x" * 200 + "\n"
    block = (line * (1024 * 1024 // len(line))).encode()
    names = [rotated_name(i) for i in range(DEFAULT_LIMITS.max_files - 1, 0, -1)] + [LOG_NAME]
    for name in names:
        with open(directory / name, "wb") as f:
            for _ in range(DEFAULT_LIMITS.max_size // len(block)):
                f.write(block)


async def one_read(directory: Path, tail: int, traced: bool) -> tuple[float, int, int]:
    """Wall time untraced (tracemalloc slows allocation down), peak memory traced."""
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    count = 0
    async for _ in read_logs(directory, tail=tail):
        count += 1
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    return elapsed, peak, count


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_logs(directory)
        size = _size(directory)
        times: dict[int, list[float]] = {3: [], -1: []}
        peaks: dict[int, int] = {}
        for tail in times:
            _, peaks[tail], count = await one_read(directory, tail, traced=True)
        for _ in range(n):
            for tail in times:
                times[tail].append((await one_read(directory, tail, traced=False))[0])
    print(f"log set: {size / 2**20:.0f} MiB in {DEFAULT_LIMITS.max_files} files, {count} entries")
    for tail, label in ((3, "tail 3"), (-1, "whole ")):
        median = statistics.median(times[tail])
        print(f"{label}: median {median * 1000:8.1f} ms, peak {peaks[tail] / 2**20:6.2f} MiB")
    ratio = statistics.median(times[3]) / statistics.median(times[-1])
    print(f"ratio tail/whole: {ratio:.5f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="samples per side")
    asyncio.run(main(parser.parse_args().n))
