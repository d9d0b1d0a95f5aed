"""Agent configuration: command-line flags, optionally backed by a JSON file.

The JSON file follows Docker's daemon.json shape for the parts berth honours:
``{"default-runtime": "crun", "runtimes": {"crun": {"path": "/usr/bin/crun"}}}``, plus
``bip`` and ``gwbridge-bip`` (the implicit networks' gateway CIDRs, agent.implicitnets;
each may also be a flag, and one given both ways is refused, as dockerd does). It is
validated with a strict pydantic model: an unknown key or a wrong type is one line
naming the file and the key. Flags both daemons have (etcd and its TLS files, log
level, metrics) come from berth.daemonflags. Called by agent.main; everything else
receives the frozen ``AgentConfig``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.implicitnets import GatewaySetting, parse_gateway
from berth.daemonflags import EtcdSettings, add_common, common
from berth.errors import UserError
from berth.tls import TlsSettings

log = logging.getLogger("berth.agent")

# The agent API has no authentication yet (mTLS comes with deployment), and exec is root
# in every container: by default it listens on the node's underlay address only.
AGENT_PORT = 7071
METRICS_PORT = 9102


class _Runtime(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    path: str = Field(min_length=1)


class DaemonFile(BaseModel):
    """The keys of daemon.json berth honours; any other key is refused, never ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)
    default_runtime: str | None = Field(default=None, alias="default-runtime", min_length=1)
    runtimes: dict[str, _Runtime] = Field(default_factory=dict)
    bip: str | None = Field(default=None, min_length=1)
    gwbridge_bip: str | None = Field(default=None, alias="gwbridge-bip", min_length=1)


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
    p.add_argument("--node", default=socket.gethostname(), help="node name (default: hostname)")
    p.add_argument("--listen", default=None,
                   help=f"gRPC listen address (default: UNDERLAY_IP:{AGENT_PORT})")
    p.add_argument("--controller", default="", help="controller address, for image pulls")
    p.add_argument("--underlay-ip", required=True, help="this host's address on the underlay")
    p.add_argument("--underlay-dev", default="eth0", help="the underlay interface")
    p.add_argument("--state-dir", default="/var/lib/berth/agent", type=Path)
    p.add_argument("--runtime", default=None, help="OCI runtime name or path (default runc)")
    p.add_argument("--runtime-root", default="/run/berth/runc", type=Path)
    p.add_argument("--cgroup-parent", default="berth")
    p.add_argument("--lease-ttl", default=10, type=int)
    p.add_argument(
        "--dns-upstreams",
        default="host",
        help="where containers' unknown names go: 'host' (this host's resolv.conf), "
        "'none' (fail fast), or a comma-separated list of IPs",
    )
    p.add_argument("--bip", default=None,
                   help="the default network's gateway CIDR, e.g. 172.17.0.1/16 "
                   "(default: the first free one of Docker's pools)")
    p.add_argument("--gwbridge-bip", default=None,
                   help="the gateway bridge's (berth-gwbridge) gateway CIDR "
                   "(default: the next free one)")
    p.add_argument("--config", default=None, type=Path, help="daemon.json-style config file")
    add_common(p, metrics_default=None)
    return p


def read_daemon_file(path: Path) -> DaemonFile:
    """daemon.json, validated; any problem is one line naming the file and the key."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read agent config: {exc.strerror or exc}") from exc
    try:
        return DaemonFile.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        detail = str(error.get("ctx", {}).get("error", ""))
        problem = {
            "extra_forbidden": "not supported yet (supported: default-runtime, runtimes, bip, "
                               "gwbridge-bip)",
            "model_type": "the agent config must be a JSON object",
            "json_invalid": f"not valid JSON: {detail}",
        }.get(error["type"], error["msg"])
        raise UserError(f"{path}: {where + ': ' if where else ''}{problem}") from exc


def _runtime_from_file(data: DaemonFile, wanted: str | None) -> str | None:
    name = wanted or data.default_runtime
    if name and name in data.runtimes:
        return data.runtimes[name].path
    return name


def _gateway(flag: str, flag_value: str | None, key: str, file_value: str | None,
             path: Path | None) -> GatewaySetting | None:
    """One implicit network's gateway CIDR, from the flag or the file, never both."""
    if flag_value is not None and file_value is not None:
        raise UserError(f"{path}: {key}: also given as {flag}; keep one")
    if flag_value is not None:
        return parse_gateway(flag_value, flag)
    if file_value is not None:
        return parse_gateway(file_value, f"{path}: {key}")
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
    found = tuple(v.strip() for v in value.split(",") if v.strip())
    for ip in found:
        try:
            ipaddress.ip_address(ip)
        except ValueError as exc:
            raise UserError(f"--dns-upstreams: {ip!r} is not an IP address") from exc
    return found


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


def _listen(flag: str | None, underlay_ip: str) -> str:
    if flag is None:
        return join_host_port(underlay_ip, AGENT_PORT)
    host, sep, port = flag.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--listen {flag!r}: expected HOST:PORT")
    if _is_wildcard(host):
        log.warning("--listen %s: the agent API (root exec in every container, no "
                    "authentication yet) is open on every interface of this host", flag)
    return flag


def parse(argv: list[str] | None = None) -> AgentConfig:
    parser = _parser()
    ns = parser.parse_args(argv)
    shared = common(parser, ns)
    if _ip(ns.underlay_ip) is None:
        raise UserError(f"--underlay-ip {ns.underlay_ip!r}: not an IP address")
    runtime = ns.runtime
    data = DaemonFile() if ns.config is None else read_daemon_file(ns.config)
    if ns.config is not None:
        runtime = _runtime_from_file(data, runtime)
    return AgentConfig(
        node=ns.node,
        listen=_listen(ns.listen, ns.underlay_ip),
        etcd=shared.etcd,
        controller=ns.controller,
        underlay_ip=ns.underlay_ip,
        underlay_dev=ns.underlay_dev,
        state_dir=ns.state_dir,
        runtime_bin=resolve_runtime(runtime or "runc"),
        runtime_root=ns.runtime_root,
        cgroup_parent=ns.cgroup_parent,
        lease_ttl=ns.lease_ttl,
        dns_upstreams=_upstreams(ns.dns_upstreams),
        log_level=shared.log_level,
        metrics_listen=(join_host_port(ns.underlay_ip, METRICS_PORT)
                        if shared.metrics_listen is None else shared.metrics_listen),
        bip=_gateway("--bip", ns.bip, "bip", data.bip, ns.config),
        gwbridge_bip=_gateway("--gwbridge-bip", ns.gwbridge_bip, "gwbridge-bip",
                              data.gwbridge_bip, ns.config),
        tls=shared.tls,
    )
