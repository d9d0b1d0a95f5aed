"""Agent configuration: command-line flags, merged with ``/etc/berth/agent.json``.

The file is dockerd's daemon.json for the keys berth honours (agent.configfile; every key
and its flag are in docs/config.md). berth.daemonconfig reads it (``--config PATH`` names
another, which must exist) and refuses a key also given by its flag, as dockerd does, so
the paired flags default to None here and the defaults apply after the merge. Flags both
daemons have (etcd and its TLS files, log level, metrics) come from berth.daemonflags.
Called by agent.main; everything else receives the frozen ``AgentConfig``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from agent.configfile import AgentFile, LogOpts, parse_ips, parse_labels
from agent.implicitnets import GatewaySetting, parse_gateway
from berth import daemonconfig, keyspace
from berth.daemonflags import EtcdSettings, add_common, common
from berth.errors import UserError
from berth.imagelimits import MAX_ARCHIVE_BYTES
from berth.manifest_network import MAX_MTU, MIN_MTU
from berth.tls import TlsSettings

log = logging.getLogger("berth.agent")
T = TypeVar("T")

# The agent API has no authentication yet (mTLS comes with deployment), and exec is root
# in every container: by default it listens on the node's underlay address only.
AGENT_PORT = 7071
METRICS_PORT = 9102


# Each file key and the flag that sets the same thing; giving both is refused.
FLAGS = {
    "data-root": "--state-dir", "live-restore": "--live-restore", "log-opts": "--log-opt",
    "default-runtime": "--runtime", "dns": "--dns-upstreams", "mtu": "--mtu",
    "bip": "--bip", "gwbridge-bip": "--gwbridge-bip", "labels": "--label",
    "debug": "--debug", "log-level": "--log-level", "hosts": "--listen",
    "max-image-archive-size": "--max-image-archive-size",
    **daemonconfig.TLS_FLAGS,
}
DEFAULT_STATE_DIR = Path("/var/lib/berth/agent")


@dataclass(frozen=True)
class AgentConfig:
    node: str
    listen: str
    etcd: EtcdSettings
    controller: str
    underlay_ip: str
    underlay_dev: str
    state_dir: Path
    runtime_bin: str
    runtime_root: Path
    cgroup_parent: str
    lease_ttl: int = 10
    dns_upstreams: tuple[str, ...] | None = None  # None: the host's resolv.conf
    log_level: str = "INFO"
    metrics_listen: str = ""                      # "": no /metrics
    # The implicit networks' gateway CIDRs as configured; None: chosen at start
    # (agent.implicitnets.choose), around the node's own addresses and routes.
    bip: GatewaySetting | None = None
    gwbridge_bip: GatewaySetting | None = None
    # False: a clean exit (SIGTERM) stops this node's containers, as dockerd does
    # without live-restore. True (berth's default): they outlive the agent.
    live_restore: bool = True
    log_opts: LogOpts = field(default_factory=LogOpts)   # max-size, max-file; None: default
    mtu: int = 0                                  # the implicit bridges'; 0: the underlay's
    labels: dict[str, str] = field(default_factory=dict)
    max_archive_bytes: int = MAX_ARCHIVE_BYTES
    config_file: str = ""                         # the file read, "" for none
    tls: TlsSettings | None = None                # None: plaintext API (no --tlsverify)

    @property
    def advertise(self) -> str:
        """The agent address other parts dial: the underlay IP if ``listen`` is a wildcard."""
        host, _, port = self.listen.rpartition(":")
        if _is_wildcard(host):
            return join_host_port(self.underlay_ip, int(port))
        return self.listen


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth-agent", description="berth node agent")
    p.add_argument("--config", default=None, type=Path,
                   help=f"configuration file (default {daemonconfig.default_path('agent')} "
                        f"when it exists)")
    p.add_argument("--node", default=socket.gethostname(), help="node name (default: hostname)")
    p.add_argument("--listen", default=None,
                   help=f"gRPC listen address (default: UNDERLAY_IP:{AGENT_PORT}); key hosts")
    p.add_argument("--controller", default="", help="controller address, for image pulls")
    p.add_argument("--underlay-ip", required=True, help="this host's address on the underlay")
    p.add_argument("--underlay-dev", default="eth0", help="the underlay interface")
    p.add_argument("--state-dir", default=None, type=Path,
                   help=f"state directory (default {DEFAULT_STATE_DIR}); key data-root")
    p.add_argument("--runtime", "--default-runtime", dest="runtime", default=None,
                   help="OCI runtime name or path (default runc); key default-runtime")
    p.add_argument("--runtime-root", default="/run/berth/runc", type=Path)
    p.add_argument("--cgroup-parent", default="berth")
    p.add_argument("--lease-ttl", default=10, type=int)
    p.add_argument(
        "--dns-upstreams", default=None,
        help="where containers' unknown names go: 'host' (this host's resolv.conf, the "
        "default), 'none' (fail fast), or a comma-separated list of IPs; key dns",
    )
    p.add_argument("--bip", default=None,
                   help="the default network's gateway CIDR, e.g. 172.17.0.1/16 "
                   "(default: the first free one of Docker's pools)")
    p.add_argument("--gwbridge-bip", default=None,
                   help="the gateway bridge's (berth-gwbridge) gateway CIDR "
                   "(default: the next free one)")
    p.add_argument("--live-restore", action=argparse.BooleanOptionalAction, default=None,
                   help="keep containers running when the agent exits (default: on)")
    p.add_argument("--log-opt", action="append", default=None, metavar="KEY=VALUE",
                   help="container log rotation: max-size=20m, max-file=5; key log-opts")
    p.add_argument("--mtu", type=int, default=None,
                   help="MTU of the implicit bridge networks (default: the underlay's)")
    p.add_argument("--label", action="append", default=None, metavar="KEY=VALUE",
                   help="a node label (repeatable); key labels")
    p.add_argument("-D", "--debug", action="store_const", const=True, default=None,
                   help="log at DEBUG level")
    p.add_argument("--max-image-archive-size", default=None, metavar="SIZE",
                   help="largest image archive the agent loads (default 8g)")
    add_common(p, metrics_default=None)
    return p


def _runtime_from_file(data: AgentFile, wanted: str | None) -> str | None:
    name = wanted or data.default_runtime
    if name and name in data.runtimes:
        return data.runtimes[name].path
    return name


def _gateway(flag: str, flag_value: str | None, where: str,
             file_value: str | None) -> GatewaySetting | None:
    """One implicit network's gateway CIDR, from the flag or the file (never both)."""
    if flag_value is not None:
        return parse_gateway(flag_value, flag)
    if file_value is not None:
        return parse_gateway(file_value, where)
    return None


def resolve_runtime(name: str) -> str:
    """A runtime name (``runc``) or path, checked to exist: a missing runtime is a user error."""
    found = shutil.which(name)
    if found is None:
        raise UserError(f"OCI runtime {name!r} not found on PATH")
    return found


def _upstreams(value: str) -> tuple[str, ...] | None:
    if value == "host":
        return None
    if value == "none":
        return ()
    try:
        return parse_ips([v.strip() for v in value.split(",") if v.strip()])
    except ValueError as exc:
        raise UserError(f"--dns-upstreams: {exc}") from exc


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_wildcard(host: str) -> bool:
    host = host.strip("[]")
    if host in ("", "*"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_unspecified


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _listen(value: str | None, underlay_ip: str, source: str = "--listen") -> str:
    if value is None:
        return join_host_port(underlay_ip, AGENT_PORT)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{source} {value!r}: expected HOST:PORT")
    if _is_wildcard(host):
        log.warning("%s %s: the agent API (root exec in every container) is open on every "
                    "interface of this host", source, value)
    return value


def _flag(flag: str, convert: Callable[[], T]) -> T:
    """A flag's value converted; a ValueError becomes one line naming the flag."""
    try:
        return convert()
    except ValidationError as exc:
        raise UserError(f"{flag}: {daemonconfig.describe(exc)}") from exc
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from exc


def _log_opts(ns: argparse.Namespace, data: AgentFile) -> LogOpts:
    if ns.log_opt is None:
        return data.log_opts or LogOpts()

    def opts() -> LogOpts:
        pairs = [item.partition("=") for item in ns.log_opt]
        bad = [key for key, sep, _ in pairs if not sep]
        if bad:
            raise ValueError(f"{bad[0]!r}: expected KEY=VALUE")
        return LogOpts.model_validate({key: value for key, _, value in pairs})

    return _flag("--log-opt", opts)


def _mtu(ns: argparse.Namespace, data: AgentFile) -> int:
    if ns.mtu is not None and not MIN_MTU <= ns.mtu <= MAX_MTU:
        raise UserError(f"--mtu {ns.mtu}: expected {MIN_MTU}..{MAX_MTU}")
    return ns.mtu if ns.mtu is not None else data.mtu or 0


def _level(ns: argparse.Namespace, data: AgentFile, common_level: str) -> str:
    if ns.debug or data.debug:
        return "DEBUG"
    if ns.log_level is None and data.log_level is not None:
        return data.log_level
    return common_level


def parse(argv: list[str] | None = None, default_file: Path | None = None) -> AgentConfig:
    """Flags and the configuration file, merged.

    ``default_file`` (/etc/berth/agent.json unless a test names another) is read when it
    exists; ``--config`` names a file that must.
    """
    parser = _parser()
    ns = parser.parse_args(argv)
    if _ip(ns.underlay_ip) is None:
        raise UserError(f"--underlay-ip {ns.underlay_ip!r}: not an IP address")
    loaded = daemonconfig.load(ns.config, default_file or daemonconfig.default_path("agent"),
                               AgentFile)
    daemonconfig.check_conflicts(loaded, ns, FLAGS)
    daemonconfig.apply_tls(loaded, ns)
    shared = common(parser, ns)
    data = loaded.data
    listen = (_listen(ns.listen, ns.underlay_ip) if data.hosts is None
              else _listen(data.hosts, ns.underlay_ip, loaded.where("hosts")))
    upstreams = (_upstreams(ns.dns_upstreams or "host") if data.dns is None
                 else data.dns or None)
    labels = (_flag("--label", lambda: parse_labels(ns.label)) if ns.label is not None
              else data.labels or {})
    archive = (_flag("--max-image-archive-size",
                     lambda: daemonconfig.size_key(ns.max_image_archive_size))
               if ns.max_image_archive_size is not None
               else data.max_image_archive_size or MAX_ARCHIVE_BYTES)
    return AgentConfig(
        # The node name is a segment of etcd keys and the etcd user node:<name>.
        node=_flag("--node", lambda: keyspace.check_node_name(ns.node)),
        listen=listen,
        etcd=shared.etcd,
        controller=ns.controller,
        underlay_ip=ns.underlay_ip,
        underlay_dev=ns.underlay_dev,
        state_dir=ns.state_dir or Path(data.data_root or DEFAULT_STATE_DIR),
        runtime_bin=resolve_runtime(_runtime_from_file(data, ns.runtime) or "runc"),
        runtime_root=ns.runtime_root,
        cgroup_parent=ns.cgroup_parent,
        lease_ttl=ns.lease_ttl,
        dns_upstreams=upstreams,
        log_level=_level(ns, data, shared.log_level),
        metrics_listen=(join_host_port(ns.underlay_ip, METRICS_PORT)
                        if shared.metrics_listen is None else shared.metrics_listen),
        bip=_gateway("--bip", ns.bip, loaded.where("bip"), data.bip),
        gwbridge_bip=_gateway("--gwbridge-bip", ns.gwbridge_bip, loaded.where("gwbridge-bip"),
                              data.gwbridge_bip),
        live_restore=ns.live_restore if ns.live_restore is not None
        else data.live_restore is not False,
        log_opts=_log_opts(ns, data),
        mtu=_mtu(ns, data),
        labels=labels,
        max_archive_bytes=archive,
        config_file=str(loaded.path or ""),
        tls=shared.tls,
    )
