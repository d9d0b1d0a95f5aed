"""Hostile manifests: how long the controller takes to refuse them, and what a concurrent Get
pays meanwhile, against a baseline Get on an idle controller (same run, same lab).

Cases, each refused by a bound (docs/limits.md):
- ``laughs``: a 481-byte billion-laughs file (10^9 strings once expanded), refused by
  the alias budget. The review saw the old controller spend ~9 s on it with its event
  loop blocked, so a concurrent ``get nodes`` waited as long.
- ``deep``: 10,000 levels of flow nesting, refused by the depth bound.
- ``big``: a file just under 1 MiB of plain list items (about 93,000 nodes), the most
  work a legal-size file can ask for; refused at validation for its last field.

For each case, ``--samples`` refusals are timed one after another (the refusal time), and
then ``--clients`` clients apply the file in a loop while another times Gets (the loaded
Get). Printed: medians and p95, and loaded Get over idle Get as a ratio.

    .venv/bin/python bench/manifest_bounds.py [--samples 20] [--clients 2] [--keep-lab]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from common import BenchError, lab_session, nearest_rank, run_main

from clusterctl.client import Selection, connect
from protos import controller_pb2, controller_pb2_grpc

if TYPE_CHECKING:   # the async stub type exists only in the generated .pyi
    Stub = controller_pb2_grpc.ControllerAsyncStub
GET_SAMPLES = 200


def laughs() -> str:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n, letter in enumerate("bcdefghi"):
        prev = "abcdefghi"[n]
        levels.append(f"{letter}: &{letter} [" + ",".join([f"*{prev}"] * 9) + "]")
    return ("apiVersion: berth/v1\nkind: Service\nmetadata: {name: lol}\nspec:\n"
            "  image: busybox\n  x-lol:\n" + "\n".join("    " + lv for lv in levels) +
            "\n  command: *i\n")


def deep() -> str:
    return ("apiVersion: berth/v1\nkind: Service\nmetadata: {name: deep}\nspec:\n"
            "  image: busybox\n  command: " + "[" * 10_000 + "]" * 10_000 + "\n")


def big() -> str:
    head = "apiVersion: berth/v1\nkind: Service\nmetadata: {name: big}\nspec:\n  image: busybox\n"
    items = "".join(f"  - x{i}\n" for i in range(93_000))
    text = head + "  command:\n" + items + "  replicas: many\n"
    if len(text.encode()) > 1024 * 1024:
        raise BenchError(f"the big case is {len(text.encode())} bytes, over the limit")
    return text


CASES: dict[str, Callable[[], str]] = {"laughs": laughs, "deep": deep, "big": big}


async def refuse(stub: Stub, text: str) -> float:
    """Seconds until the controller refuses ``text``; BenchError if it accepts it."""
    start = time.perf_counter()
    try:
        await stub.Apply(controller_pb2.ApplyRequest(source="bench.yaml", manifest=text.encode(),
                                                     dry_run=True))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise BenchError(f"refusal came as {exc.code().name}: {exc.details()}") from exc
        return time.perf_counter() - start
    raise BenchError("the controller accepted a hostile manifest")


async def get_once(stub: Stub) -> float:
    start = time.perf_counter()
    await stub.Get(controller_pb2.GetRequest(kind="nodes"))
    return time.perf_counter() - start


async def gets(stub: Stub, count: int) -> list[float]:
    return [await get_once(stub) for _ in range(count)]


async def under_load(stub: Stub, text: str, clients: int) -> tuple[list[float], int]:
    """Get latencies while ``clients`` loops keep applying ``text``; and refusals seen."""
    stop = asyncio.Event()
    refused = 0

    async def hammer() -> None:
        nonlocal refused
        while not stop.is_set():
            await refuse(stub, text)
            refused += 1

    loaders = [asyncio.create_task(hammer()) for _ in range(clients)]
    try:
        await asyncio.sleep(0.05)       # let the loaders get going
        timed = await gets(stub, GET_SAMPLES)
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    return timed, refused


def ms(values: list[float], pct: float | None = None) -> str:
    value = statistics.median(values) if pct is None else nearest_rank(values, pct)
    return f"{value * 1000:.1f} ms"


async def measure(controller: Selection, samples: int, clients: int) -> None:
    async with connect(controller) as stub:
        await gets(stub, 20)                                  # warm up the channel
        idle = await gets(stub, GET_SAMPLES)
        print(f"idle Get: p50 {ms(idle)}, p95 {ms(idle, 95)} ({GET_SAMPLES} samples)")
        for name, make in CASES.items():
            text = make()
            times = [await refuse(stub, text) for _ in range(samples)]
            loaded, refused = await under_load(stub, text, clients)
            ratio = statistics.median(loaded) / statistics.median(idle)
            ratio95 = nearest_rank(loaded, 95) / nearest_rank(idle, 95)
            print(f"{name:7s} ({len(text.encode())} bytes): refused in p50 {ms(times)}, "
                  f"p95 {ms(times, 95)} ({samples} samples); Get meanwhile p50 {ms(loaded)}, "
                  f"p95 {ms(loaded, 95)} with {clients} clients refused {refused} times: "
                  f"{ratio:.2f}x idle (p95 {ratio95:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="refusals timed per case")
    parser.add_argument("--clients", type=int, default=2,
                        help="concurrent appliers during the loaded Gets (default 2)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab running")
    args = parser.parse_args()

    def body() -> None:
        with lab_session("mb", 1, args.keep_lab) as lab:
            run(measure(Selection(context=lab.name), args.samples, args.clients))

    run_main(body)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
