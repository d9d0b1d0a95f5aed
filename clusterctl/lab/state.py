"""Where a lab lives on disk, its persisted state file, and the public ``LabInfo`` view.

Owns /var/lib/berth/labs/<name>/lab.json (written atomically after every step, so
that ``down`` can undo a half-built lab after a crash) and where the lab's PKI lives
(``pki/``, made by ``daemons.ensure_pki``). Which lab clusterctl talks to is no business
of the lab's: ``lab up`` adds a context (clusterctl.contexts). Called by ``lab.py``,
``topology.py`` and ``daemons.py``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from berth.etcd import Etcd3Client
from berth.tls import TlsSettings
from clusterctl.lab.errors import LabError, LabNameError
from clusterctl.lab.process import is_ours

LABS_DIR = Path("/var/lib/berth/labs")
RUN_DIR = Path("/run/berth")
NETNS_DIR = Path("/run/netns")
CONTROLLER_PORT = 7070
AGENT_PORT = 7071
CONTROLLER_METRICS_PORT = 9101      # Prometheus /metrics of each daemon
AGENT_METRICS_PORT = 9102
ETCD_PORT = 2379
MAX_HOSTS = 50
# The lab's simulated outside host (topology.py): its netns role, its "internet" address
# (TEST-NET-2, RFC 5737, never routed on a real network) and the range hosts route to it.
OUTSIDE_ROLE = "out"
OUTSIDE_ADDRESS = "198.51.100.1"
OUTSIDE_NETWORK = "198.51.100.0/24"
# Interface names are limited to 15 bytes: "bl-" + 8 + "-ctl" fits, longer names would not.
_NAME_RE = re.compile(r"[a-z0-9]{1,8}")


def validate(name: str, hosts: int = 1) -> None:
    """Reject names that cannot become netns/link names, and impossible host counts."""
    if not _NAME_RE.fullmatch(name):
        raise LabNameError(
            f"invalid lab name {name!r}: use 1-8 lowercase letters or digits "
            "(it becomes part of interface names, which Linux limits to 15 characters)"
        )
    if not 1 <= hosts <= MAX_HOSTS:
        raise LabNameError(f"invalid host count {hosts}: a lab has 1 to {MAX_HOSTS} hosts")


def lab_dir(name: str) -> Path:
    return LABS_DIR / name


def pki_dir(name: str) -> Path:
    return lab_dir(name) / "pki"


def run_dir(name: str) -> Path:
    return RUN_DIR / name


def netns_prefix(name: str) -> str:
    return f"bl-{name}-"


def root_link(name: str) -> str:
    return f"bl-{name}"


class ProcessRecord(BaseModel):
    """One daemon the lab started: enough to verify it (argv) and restart it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    netns: str
    argv: tuple[str, ...]
    pid: int
    log: str


class LabState(BaseModel):
    """The content of lab.json. Mutable while ``up`` builds; saved after each step."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    name: str
    subnet: str
    hosts: int
    processes: dict[str, ProcessRecord] = {}
    image_loaded: bool = False

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def root_ip(self) -> str:
        return str(self.network[1])

    @property
    def ctl_ip(self) -> str:
        return str(self.network[2])

    def host_ip(self, index: int) -> str:
        return str(self.network[10 + index])

    @property
    def outside_ip(self) -> str:
        """The outside host's address on the lab subnet: the hosts' next hop to it."""
        return str(self.network[254])

    def host_names(self) -> list[str]:
        return [f"h{i}" for i in range(1, self.hosts + 1)]


@dataclass(frozen=True)
class HostInfo:
    name: str                 # node name, "h1"
    netns: str                # "bl-<lab>-h1"
    underlay_ip: str
    agent_address: str        # "<ip>:7071"
    agent_metrics: str        # "http://<ip>:9102/metrics"
    agent_pid: int | None     # None until started, or when the lab runs without daemons
    state_dir: Path
    runtime_root: Path
    cgroup_parent: str


@dataclass(frozen=True)
class OutsideInfo:
    """The simulated outside host: nothing runs in it until a test starts something."""

    netns: str                # "bl-<lab>-out"
    address: str              # "198.51.100.1": what containers' egress is tested against
    lab_ip: str               # its address on the lab subnet, the hosts' next hop
    routed: str               # "198.51.100.0/24": routed via lab_ip in every host netns


@dataclass(frozen=True)
class LabInfo:
    name: str
    subnet: str
    root_ip: str              # the address of the root-netns veth ``bl-<lab>``
    controller: str           # "<ip>:7070", what clusterctl dials
    controller_metrics: str   # "http://<ip>:9101/metrics"
    etcd: str                 # "<ip>:2379"
    hosts: tuple[HostInfo, ...]
    outside: OutsideInfo
    state_dir: Path
    pids: Mapping[str, int]   # role ("etcd", "controller", "agent-h1") -> pid
    alive: Mapping[str, bool]  # role -> the recorded process still runs
    pki: Path                 # the lab's PKI dir: ca.crt, admin.crt/.key, node-h1.crt/.key...

    @property
    def running(self) -> bool:
        return bool(self.alive) and all(self.alive.values())

    def tls(self, stem: str = "admin") -> TlsSettings:
        """The CA and identity ``stem`` (admin, controller, node-h1) of the lab's PKI."""
        return TlsSettings(str(self.pki / "ca.crt"), str(self.pki / f"{stem}.crt"),
                           str(self.pki / f"{stem}.key"))

    def etcd_client(self, stem: str = "admin", timeout: float = 5.0) -> Etcd3Client:
        """A client of the lab's etcd (TLS, client certificate ``stem``; admin by default)."""
        tls = self.tls(stem)
        return Etcd3Client(self.etcd, ca_cert=tls.ca, cert_cert=tls.cert, cert_key=tls.key,
                           timeout=timeout)


def info_of(state: LabState) -> LabInfo:
    alive = {role: is_ours(p.pid, p.argv) for role, p in state.processes.items()}
    hosts = []
    for i, host in enumerate(state.host_names(), start=1):
        agent = state.processes.get(f"agent-{host}")
        hosts.append(
            HostInfo(
                name=host,
                netns=netns_prefix(state.name) + host,
                underlay_ip=state.host_ip(i),
                agent_address=f"{state.host_ip(i)}:{AGENT_PORT}",
                agent_metrics=f"http://{state.host_ip(i)}:{AGENT_METRICS_PORT}/metrics",
                agent_pid=agent.pid if agent else None,
                state_dir=lab_dir(state.name) / "hosts" / host,
                runtime_root=run_dir(state.name) / host / "runc",
                cgroup_parent=f"berth-{state.name}-{host}",
            )
        )
    return LabInfo(
        name=state.name,
        subnet=state.subnet,
        root_ip=state.root_ip,
        controller=f"{state.ctl_ip}:{CONTROLLER_PORT}",
        controller_metrics=f"http://{state.ctl_ip}:{CONTROLLER_METRICS_PORT}/metrics",
        etcd=f"{state.ctl_ip}:{ETCD_PORT}",
        hosts=tuple(hosts),
        outside=OutsideInfo(
            netns=netns_prefix(state.name) + OUTSIDE_ROLE,
            address=OUTSIDE_ADDRESS,
            lab_ip=state.outside_ip,
            routed=OUTSIDE_NETWORK,
        ),
        state_dir=lab_dir(state.name),
        pids={role: p.pid for role, p in state.processes.items()},
        alive=alive,
        pki=pki_dir(state.name),
    )


def _state_file(name: str) -> Path:
    return lab_dir(name) / "lab.json"


def load(name: str) -> LabState | None:
    path = _state_file(name)
    try:
        return LabState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError as exc:
        raise LabError(f"lab state file {path} is corrupt: {exc}") from exc


def save(state: LabState) -> None:
    path = _state_file(state.name)
    _write_atomic(path, state.model_dump_json(indent=2).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def all_states() -> list[LabState]:
    if not LABS_DIR.is_dir():
        return []
    states = []
    for entry in sorted(LABS_DIR.iterdir()):
        if entry.is_dir() and _NAME_RE.fullmatch(entry.name):
            state = load(entry.name)
            if state is not None:
                states.append(state)
    return states


@contextmanager
def labs_lock() -> Iterator[None]:
    """Serialize subnet allocation between concurrent ``up`` calls (any process)."""
    LABS_DIR.mkdir(parents=True, exist_ok=True)
    with open(LABS_DIR / ".lock", "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
