"""ExecProcess's output queue: bounded for a slow reader, drained for a caller that only waits.

A plain host process stands in for ``runc exec`` here (the pipes are what matter);
tests/integration/test_runtime_streams.py does the same through runc and gRPC.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

from agent.runtime.execs import ExecProcess

OUTPUT = 64 * 1024 * 1024


async def start(tmp_path: Path, *argv: str) -> ExecProcess:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    return ExecProcess(proc, tmp_path / "exec.log", tmp_path / "exec.pid")


async def test_slow_reader_holds_back_the_command_instead_of_queueing(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        proc = await start(tmp_path, "head", "-c", str(OUTPUT), "/dev/zero")
        total = 0
        async for stream, chunk in proc:
            assert stream == "stdout"
            total += len(chunk)
            await asyncio.sleep(0)   # every other task gets to run between chunks
            await asyncio.sleep(0)
        code = await proc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, code) == (OUTPUT, 0)
    assert peak < 8 * 1024 * 1024, f"{peak} bytes held for a slow reader"


async def test_waiting_without_reading_neither_deadlocks_nor_loses_the_code(
    tmp_path: Path,
) -> None:
    proc = await start(tmp_path, "sh", "-c", f"head -c {OUTPUT} /dev/zero; echo err >&2; exit 3")
    assert await proc == 3


async def test_both_streams_arrive_in_full(tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
    proc = await start(tmp_path, "sh", "-c", script)
    got: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    async for stream, chunk in proc:
        got[stream] += chunk
    assert await proc == 0
    assert got["stdout"].split() == [f"out{i}".encode() for i in range(2000)]
    assert got["stderr"].split() == [f"err{i}".encode() for i in range(2000)]
