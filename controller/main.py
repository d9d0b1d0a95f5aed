"""``berth-controller``: the controller daemon's entry point.

    berth-controller --listen HOST:PORT --etcd HOST:PORT [--state-dir DIR]
                     [--ca FILE --cert FILE --key FILE] [--no-scheduler]
                     [--max-replicas N] [--max-containers-per-node N]

Connects to etcd (``--ca/--cert/--key`` are the etcd client's TLS files),
serves the Controller gRPC API plus grpc.health.v1, and runs the scheduler
loop. The two limits are described in berth/limits.py and docs/limits.md.
SIGTERM/SIGINT stop it gracefully. Only ``main()`` exits the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from berth.daemon import run_daemon
from berth.etcd import Etcd3Client
from berth.limits import DEFAULT_MAX_CONTAINERS_PER_NODE, DEFAULT_MAX_REPLICAS, Limits
from controller.scheduler import Scheduler
from controller.server import start_server

log = logging.getLogger("berth.controller")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="berth-controller", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:7700", help="gRPC address (HOST:PORT)")
    parser.add_argument("--etcd", default="127.0.0.1:2379", help="etcd endpoint (HOST:PORT)")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/berth/controller"),
                        help="where image archives are kept")
    parser.add_argument("--ca", help="CA bundle to verify etcd")
    parser.add_argument("--cert", help="client certificate for etcd")
    parser.add_argument("--key", help="client key for etcd")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="serve the API only (another controller schedules)")
    parser.add_argument("--max-replicas", type=int, default=DEFAULT_MAX_REPLICAS,
                        help="most replicas one service may ask for; also bounds service "
                             "name length (default %(default)s)")
    parser.add_argument("--max-containers-per-node", type=int,
                        default=DEFAULT_MAX_CONTAINERS_PER_NODE,
                        help="no new container goes to a node holding this many "
                             "(default %(default)s)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    try:
        args.limits = Limits(args.max_replicas, args.max_containers_per_node)
    except ValueError as exc:
        parser.error(f"--max-replicas/--max-containers-per-node: {exc}")
    return args


async def run(args: argparse.Namespace) -> None:
    etcd = Etcd3Client(args.etcd, ca_cert=args.ca, cert_cert=args.cert, cert_key=args.key)
    async with etcd:
        await etcd.status()     # fail fast with a clear message if etcd is unreachable
        scheduler = None if args.no_scheduler else Scheduler(etcd, args.limits)
        running = await start_server(etcd, args.listen, args.state_dir, scheduler, args.limits)
        log.info("controller listening on port %d (etcd %s)", running.port, args.etcd)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait(), name="stop")]
        if scheduler is not None:
            tasks.append(asyncio.create_task(scheduler.run(), name="scheduler"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()       # a scheduler that died takes the daemon down loudly
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await running.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_daemon("berth-controller", args.log_level, lambda: run(args))


if __name__ == "__main__":
    main()
