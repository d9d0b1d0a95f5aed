"""The controller's configuration: its flags merged with ``/etc/berth/controller.json``.

Called by controller.main; everything else receives ``ControllerConfig``. The file is the
controller's daemon.json (``ControllerFile``; docs/config.md lists each key with its flag),
read by berth.daemonconfig, which refuses a key also given by its flag: the paired flags
default to None and the defaults apply after the merge. Flags that the agent has too (etcd
and its TLS files, log level, metrics) come from berth.daemonflags so both daemons spell
them alike.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from berth import daemonconfig
from berth.daemonconfig import CommonKeys
from berth.daemonflags import EtcdSettings, add_common, common
from berth.errors import UserError
from berth.imagelimits import MAX_ARCHIVE_BYTES
from berth.limits import DEFAULT_MAX_CONTAINERS_PER_NODE, DEFAULT_MAX_REPLICAS, Limits
from berth.tls import TlsSettings

METRICS_PORT = 9101
DEFAULT_LISTEN = "127.0.0.1:7700"
DEFAULT_STATE_DIR = Path("/var/lib/berth/controller")
FLAGS = {
    "data-root": "--state-dir", "debug": "--debug", "log-level": "--log-level",
    "hosts": "--listen", "max-replicas": "--max-replicas",
    "max-containers-per-node": "--max-containers-per-node",
    "max-image-archive-size": "--max-image-archive-size",
    **daemonconfig.TLS_FLAGS,
}


class ControllerFile(CommonKeys):
    """Every key the controller honours; anything else is refused."""

    max_replicas: int | None = Field(default=None, alias="max-replicas", ge=1, le=1_000_000)
    max_containers_per_node: int | None = Field(default=None, alias="max-containers-per-node",
                                                ge=1, le=1_000_000)


@dataclass(frozen=True)
class ControllerConfig:
    listen: str
    state_dir: Path
    scheduler: bool
    limits: Limits
    etcd: EtcdSettings
    log_level: str
    metrics_listen: str
    max_archive_bytes: int = MAX_ARCHIVE_BYTES
    config_file: str = ""
    tls: TlsSettings | None = None     # None: plaintext API (no --tlsverify)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth-controller", description="berth controller")
    parser.add_argument("--config", default=None, type=Path,
                        help=f"configuration file (default "
                             f"{daemonconfig.default_path('controller')} when it exists)")
    parser.add_argument("--listen", default=None,
                        help=f"gRPC address (HOST:PORT, default {DEFAULT_LISTEN}); key hosts")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"where image archives are kept (default {DEFAULT_STATE_DIR}); "
                             f"key data-root")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="serve the API only (another controller schedules)")
    parser.add_argument("--max-replicas", type=int, default=None,
                        help=f"most replicas one service may ask for; also bounds service "
                             f"name length (default {DEFAULT_MAX_REPLICAS})")
    parser.add_argument("--max-containers-per-node", type=int, default=None,
                        help=f"no new container goes to a node holding this many "
                             f"(default {DEFAULT_MAX_CONTAINERS_PER_NODE})")
    parser.add_argument("--max-image-archive-size", default=None, metavar="SIZE",
                        help="largest image archive `clusterctl image load` may send "
                             "(default 8g)")
    parser.add_argument("-D", "--debug", action="store_const", const=True, default=None,
                        help="log at DEBUG level")
    add_common(parser, metrics_default=f"127.0.0.1:{METRICS_PORT}")
    return parser


def _listen(value: str, source: str) -> str:
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"{source} {value!r}: expected HOST:PORT")
    return value


def _archive(ns: argparse.Namespace, data: ControllerFile) -> int:
    if ns.max_image_archive_size is None:
        return data.max_image_archive_size or MAX_ARCHIVE_BYTES
    try:
        return daemonconfig.size_key(ns.max_image_archive_size)
    except ValueError as exc:
        raise UserError(f"--max-image-archive-size: {exc}") from exc


def _first(flag: int | None, key: int | None, default: int) -> int:
    return flag if flag is not None else key if key is not None else default


def parse(argv: list[str] | None = None, default_file: Path | None = None) -> ControllerConfig:
    """Flags and the configuration file, merged (``default_file``: /etc/berth/controller.json)."""
    parser = _parser()
    ns = parser.parse_args(argv)
    loaded = daemonconfig.load(
        ns.config, default_file or daemonconfig.default_path("controller"), ControllerFile)
    daemonconfig.check_conflicts(loaded, ns, FLAGS)
    daemonconfig.apply_tls(loaded, ns)
    shared = common(parser, ns)
    data = loaded.data
    try:
        limits = Limits(
            _first(ns.max_replicas, data.max_replicas, DEFAULT_MAX_REPLICAS),
            _first(ns.max_containers_per_node, data.max_containers_per_node,
                   DEFAULT_MAX_CONTAINERS_PER_NODE))
    except ValueError as exc:
        raise UserError(f"--max-replicas/--max-containers-per-node: {exc}") from exc
    listen = (_listen(ns.listen or DEFAULT_LISTEN, "--listen") if data.hosts is None
              else _listen(data.hosts, loaded.where("hosts")))
    log_level = shared.log_level if ns.log_level is not None else data.log_level or "INFO"
    return ControllerConfig(
        listen=listen, state_dir=ns.state_dir or Path(data.data_root or DEFAULT_STATE_DIR),
        scheduler=not ns.no_scheduler, limits=limits, etcd=shared.etcd,
        log_level="DEBUG" if ns.debug or data.debug else log_level,
        metrics_listen=shared.metrics_listen or "",
        max_archive_bytes=_archive(ns, data), config_file=str(loaded.path or ""),
        tls=shared.tls,
    )
