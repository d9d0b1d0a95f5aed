"""``berth-controller``: the controller daemon's entry point.

    berth-controller [--config FILE] --listen HOST:PORT --etcd HOST:PORT [--state-dir DIR]
                     [--etcd-ca FILE --etcd-cert FILE --etcd-key FILE] [--no-scheduler]
                     [--max-replicas N] [--max-containers-per-node N]
                     [--metrics-listen HOST:PORT] [--log-level LEVEL]

Connects to etcd, serves the Controller gRPC API plus grpc.health.v1 and Prometheus
/metrics, and runs the scheduler loop. Flags and /etc/berth/controller.json are parsed
in config.py (docs/config.md); the two limits
are described in berth/limits.py and docs/limits.md.
SIGTERM/SIGINT stop it gracefully. Only ``main()`` exits the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from berth import metrics
from berth.daemon import run_daemon
from berth.errors import UserError
from controller import config
from controller.config import ControllerConfig
from controller.info import InfoSource
from controller.scheduler import Scheduler
from controller.server import start_server

log = logging.getLogger("berth.controller")


async def run(cfg: ControllerConfig) -> None:
    if cfg.tls is not None and (cn := cfg.tls.common_name()) != "controller":
        raise UserError(f"--tlscert {cfg.tls.cert}: its CN is {cn!r}, a controller's is "
                        "'controller'")
    metrics_server = metrics.serve(cfg.metrics_listen) if cfg.metrics_listen else None
    etcd = cfg.etcd.client()
    async with etcd:
        await etcd.status()     # fail fast with a clear message if etcd is unreachable
        scheduler = Scheduler(etcd, cfg.limits) if cfg.scheduler else None
        running = await start_server(etcd, cfg.listen, cfg.state_dir, scheduler, cfg.limits,
                                     cfg.tls, max_archive=cfg.max_archive_bytes,
                                     info_source=InfoSource(
                                         cfg.etcd, cfg.tls.cert if cfg.tls else None))
        log.info("controller listening on port %d (etcd %s)", running.port, cfg.etcd.endpoint)
        if metrics_server is not None:
            log.info("serving /metrics on port %d", metrics_server.port)
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
            if metrics_server is not None:
                metrics_server.stop()


def main(argv: list[str] | None = None) -> None:
    def start() -> Coroutine[Any, Any, None]:
        # Parsed inside so a bad flag value or configuration file exits 1 with one line.
        cfg = config.parse(argv)
        logging.getLogger().setLevel(cfg.log_level)
        log.debug("configuration: %s", cfg)
        return run(cfg)

    run_daemon("berth-controller", "INFO", start)


if __name__ == "__main__":
    main()
