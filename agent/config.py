"""Agent configuration: command-line flags, optionally backed by a JSON file.

The JSON file follows Docker's daemon.json shape for the parts berth honours:
``{"default-runtime": "crun", "runtimes": {"crun": {"path": "/usr/bin/crun"}}}``.
Called by agent.main; everything else receives the frozen ``AgentConfig``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from berth.errors import UserError

log = logging.getLogger("berth.agent")

# daemon.json keys berth honours; any other key is refused, never silently ignored.
SUPPORTED_KEYS = frozenset({"default-runtime", "runtimes"})
# The agent API has no authentication yet (mTLS comes with deployment), and exec is root
# in every container: by default it listens on the node's underlay address only.
AGENT_PORT = 7071


@dataclass(frozen=True)
class AgentConfig:
    node: str
    listen: str
    etcd: str
    controller: str
    underlay_ip: str
    underlay_dev: str
    state_dir: Path
    runtime_bin: str
    runtime_root: Path
    cgroup_parent: str
    lease_ttl: int = 10
    dns_upstreams: tuple[str, ...] | None = None  # None: the host's resolv.conf
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None

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
    p.add_argument("--etcd", default="127.0.0.1:2379", help="etcd client endpoint host:port")
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
    p.add_argument("--config", default=None, type=Path, help="daemon.json-style config file")
    p.add_argument("--etcd-ca", default=None)
    p.add_argument("--etcd-cert", default=None)
    p.add_argument("--etcd-key", default=None)
    return p


def _runtime_from_file(path: Path, wanted: str | None) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read agent config: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: agent config must be a JSON object")
    unknown = sorted(set(data) - SUPPORTED_KEYS)
    if unknown:
        raise UserError(
            f"{path}: {unknown[0]}: not supported yet "
            f"(supported: {', '.join(sorted(SUPPORTED_KEYS))})"
        )
    name = wanted or data.get("default-runtime")
    runtimes = data.get("runtimes", {})
    if name and isinstance(runtimes, dict) and name in runtimes:
        entry = runtimes[name]
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise UserError(f"{path}: runtimes.{name}.path: must be a string")
        return str(entry["path"])
    return name if isinstance(name, str) else None


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
    ns = _parser().parse_args(argv)
    if _ip(ns.underlay_ip) is None:
        raise UserError(f"--underlay-ip {ns.underlay_ip!r}: not an IP address")
    runtime = ns.runtime
    if ns.config is not None:
        runtime = _runtime_from_file(ns.config, runtime)
    return AgentConfig(
        node=ns.node,
        listen=_listen(ns.listen, ns.underlay_ip),
        etcd=ns.etcd,
        controller=ns.controller,
        underlay_ip=ns.underlay_ip,
        underlay_dev=ns.underlay_dev,
        state_dir=ns.state_dir,
        runtime_bin=resolve_runtime(runtime or "runc"),
        runtime_root=ns.runtime_root,
        cgroup_parent=ns.cgroup_parent,
        lease_ttl=ns.lease_ttl,
        dns_upstreams=_upstreams(ns.dns_upstreams),
        etcd_ca=ns.etcd_ca,
        etcd_cert=ns.etcd_cert,
        etcd_key=ns.etcd_key,
    )
