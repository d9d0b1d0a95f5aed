"""The controller's configuration: its flags, parsed once into a frozen object.

Called by controller.main; everything else receives ``ControllerConfig``. Flags that
the agent has too (etcd and its TLS files, log level, metrics) come from
berth.daemonflags so both daemons spell them alike.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from berth.daemonflags import EtcdSettings, add_common, common
from berth.limits import DEFAULT_MAX_CONTAINERS_PER_NODE, DEFAULT_MAX_REPLICAS, Limits
from berth.tls import TlsSettings

METRICS_PORT = 9101


@dataclass(frozen=True)
class ControllerConfig:
    listen: str
    state_dir: Path
    scheduler: bool
    limits: Limits
    etcd: EtcdSettings
    log_level: str
    metrics_listen: str
    tls: TlsSettings | None = None     # None: plaintext API (no --tlsverify)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth-controller", description="berth controller")
    parser.add_argument("--listen", default="127.0.0.1:7700", help="gRPC address (HOST:PORT)")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/berth/controller"),
                        help="where image archives are kept")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="serve the API only (another controller schedules)")
    parser.add_argument("--max-replicas", type=int, default=DEFAULT_MAX_REPLICAS,
                        help="most replicas one service may ask for; also bounds service "
                             "name length (default %(default)s)")
    parser.add_argument("--max-containers-per-node", type=int,
                        default=DEFAULT_MAX_CONTAINERS_PER_NODE,
                        help="no new container goes to a node holding this many "
                             "(default %(default)s)")
    add_common(parser, metrics_default=f"127.0.0.1:{METRICS_PORT}")
    return parser


def parse(argv: list[str] | None = None) -> ControllerConfig:
    parser = _parser()
    ns = parser.parse_args(argv)
    try:
        limits = Limits(ns.max_replicas, ns.max_containers_per_node)
    except ValueError as exc:
        parser.error(f"--max-replicas/--max-containers-per-node: {exc}")
    shared = common(parser, ns)
    return ControllerConfig(
        listen=ns.listen, state_dir=ns.state_dir, scheduler=not ns.no_scheduler, limits=limits,
        etcd=shared.etcd, log_level=shared.log_level,
        metrics_listen=shared.metrics_listen or "", tls=shared.tls,
    )
