"""The manifest v1 model: what `clusterctl apply -f` sends and the controller stores.

Owned by berth so that the controller (validation, desired state in etcd) and
clusterctl (client-side checks, JSON Schema) share one definition. Callers
import from ``berth.manifest``, which adds loading and one-line errors. The Network
spec lives in manifest_network.py and published ports in manifest_ports.py.

Design notes:
- Every model is strict and forbids extra keys: ``replicas: "2"`` is a wrong
  type, not a 2, and a misspelled key is an "unknown field".
- Fields the brief names but berth does not implement yet are declared (hidden
  from the JSON Schema, never serialised) only so that they fail with "not
  supported yet" instead of "unknown field": the user learns the feature is
  planned, not that they mistyped it. A ``null`` value counts as absent.
- Inputs that Compose accepts in two shapes (``env`` list or mapping,
  ``networks`` list or mapping, ``command`` string or list, ``ports`` short or long
  syntax) are validated as a tagged union so errors keep a precise path, then
  normalised to one shape so that re-applying an equivalent file is "unchanged".
- ``network_mode`` conflicts (with ``networks``, ``ports``, and for a container mode
  ``hostname`` and ``dns``) are checked on the raw input before any field, with
  Docker's reasons (moby's validateNetContainerMode), so that a user who sets
  ``hostname`` next to ``network_mode: container:db`` learns about the conflict, not
  that ``hostname`` is "not supported yet".
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from typing import Annotated, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from berth.manifest_base import (
    DNS_LABEL,
    DnsLabel,
    Unsupported,
    _Strict,
    at,
    hidden,
    not_supported,
    show,
)
from berth.manifest_network import (
    BROADEST_PREFIX,
    NETWORK_DRIVERS,
    NetworkSpec,
    unusable_subnet,
)
from berth.manifest_ports import (
    IPVS_MISSING,
    MAX_PORTS_PER_SERVICE,
    ServicePort,
    overlaps,
    parse_short,
)

__all__ = [
    "API_VERSION", "BROADEST_PREFIX", "DEFAULT_NETWORK", "DNS_LABEL", "GATEWAY_NETWORK",
    "KINDS", "NETWORK_DRIVERS", "RESERVED_NETWORK_NAMES", "NetworkSpec", "ServicePort",
    "unusable_subnet",
]

API_VERSION = "berth/v1"
KINDS = ("Network", "Service")

# Node-local networks berth makes itself, never stored in etcd: the default network a
# service without ``networks`` joins (Docker's ``bridge``/docker0), and the gateway bridge
# that gives overlay containers egress and published ports (Docker's docker_gwbridge).
DEFAULT_NETWORK = "bridge"
GATEWAY_NETWORK = "berth-gwbridge"
# Names a Network document may not take (Docker reserves bridge, host and none too).
RESERVED_NETWORK_NAMES = (DEFAULT_NETWORK, GATEWAY_NETWORK, "host", "none")
_RESERVED_WHY = {
    DEFAULT_NETWORK: "it is the default network berth makes on every node (a service "
                     "without networks joins it); pick another name",
    GATEWAY_NETWORK: "it is the gateway bridge berth makes on every node; pick another name",
    "host": "use network_mode: host on the service",
    "none": "use network_mode: none on the service",
}

_UNSUPPORTED_SERVICE = (
    "volumes", "restart", "resources", "healthcheck", "user",
    "labels", "cap_add", "cap_drop", "privileged", "devices",
    "extra_hosts", "tmpfs", "read_only", "stop_signal", "stop_grace_period", "ulimits",
    "sysctls", "init", "tty", "stdin_open", "depends_on", "expose", "security_opt",
    "logging", "domainname", "shm_size", "secrets", "configs", "update_config",
)
_UNSUPPORTED_PLACEMENT = ("constraints", "spread")

# network_mode values (Compose's): "bridge" is the default network and is stored as null.
NETWORK_MODES = ("bridge", "host", "none", "container:<name>", "service:<name>")
_SHARED = "container"       # container:<name> and service:<name> share another's netns
_CONFLICTS: dict[str, dict[str, str]] = {
    "networks": {
        "bridge": "use either network_mode or networks (bridge is the default network, "
                  "which a service without networks joins)",
        "host": "container sharing network namespace with another container or host cannot "
                "be connected to any other network",
        _SHARED: "container sharing network namespace with another container or host "
                 "cannot be connected to any other network",
        "none": "container cannot be connected to multiple networks with one of the "
                "networks in private (none) mode",
    },
    "ports": {
        "host": "conflicting options: port publishing and the host network mode (the "
                "container listens on the node's own ports)",
        _SHARED: "conflicting options: port publishing and the container type network mode",
        "none": "conflicting options: port publishing and the none network mode (the "
                "container has only lo)",
    },
    "hostname": {_SHARED: "conflicting options: hostname and the network mode"},
    "dns": {_SHARED: "conflicting options: dns and the network mode"},
}


def _mode_kind(mode: str) -> str | None:
    """bridge | host | none | container (container:/service:), None if not a mode."""
    if mode in ("bridge", "host", "none"):
        return mode
    kind, sep, _target = mode.partition(":")
    return _SHARED if sep and kind in ("container", "service") else None


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, list | dict) and not value)


class Metadata(_Strict):
    name: DnsLabel = Field(description="DNS label: lower-case letters, digits and '-'")
    labels: dict[str, str] = Field(default_factory=dict)


class ServiceNetwork(_Strict):
    """A service's attachment options on one network (Compose's long form)."""

    aliases: list[DnsLabel] = Field(default_factory=list)
    ip: str | None = Field(default=None, description="static IPv4 address inside the subnet")

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError as exc:
            raise PydanticCustomError("ip", "not an IPv4 address: {e}", {"e": str(exc)}) from exc


class Placement(_Strict):
    node: DnsLabel | None = None
    constraints: Unsupported = hidden()
    spread: Unsupported = hidden()

    _reject = field_validator(*_UNSUPPORTED_PLACEMENT)(not_supported)


def _shape(value: object) -> str | None:
    if isinstance(value, list):
        return "<list>"
    if isinstance(value, dict):
        return "<mapping>"
    return None


def _port_shape(value: object) -> str | None:
    if isinstance(value, str):
        return "<string>"
    if isinstance(value, int) and not isinstance(value, bool):
        return "<integer>"
    if isinstance(value, dict | ServicePort):
        return "<mapping>"
    return None


EnvInput = Annotated[
    Annotated[list[str], Tag("<list>")] | Annotated[dict[str, str | int | float], Tag("<mapping>")],
    Discriminator(_shape, custom_error_type="env",
                  custom_error_message="expected a mapping or a list of KEY=VALUE"),
]
NetworksInput = Annotated[
    Annotated[list[DnsLabel], Tag("<list>")]
    | Annotated[dict[DnsLabel, ServiceNetwork | None], Tag("<mapping>")],
    Discriminator(_shape, custom_error_type="networks",
                  custom_error_message="expected a list of network names or a mapping"),
]
PortInput = Annotated[
    Annotated[str, Tag("<string>")] | Annotated[int, Tag("<integer>")]
    | Annotated[ServicePort, Tag("<mapping>")],
    Discriminator(_port_shape, custom_error_type="port",
                  custom_error_message='expected "[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"'
                                       ", a container port number or a mapping with target"),
]


class ServiceSpec(_Strict):
    replicas: int = Field(default=1, ge=0)
    image: str = Field(min_length=1)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: EnvInput = Field(default_factory=dict)
    workdir: str | None = None
    network_mode: str | None = Field(
        default=None, description="host | none | container:<name> | service:<name> instead "
        "of networks; bridge (the default network) is stored as null",
        json_schema_extra={"pattern": "^(bridge|host|none|(container|service):"
                           + DNS_LABEL.strip("^$") + ")$"})
    networks: NetworksInput = Field(default_factory=dict)
    ports: list[PortInput] = Field(
        default_factory=list, description='Compose short syntax ("8080:80", '
        '"127.0.0.1:8081:80/udp", "80" for a random host port) or long syntax')
    endpoint_mode: str = Field(default="dnsrr", description="dnsrr (vip needs IPVS: refused)",
                               json_schema_extra={"enum": ["dnsrr"]})
    placement: Placement = Field(default_factory=Placement)

    volumes: Unsupported = hidden()
    restart: Unsupported = hidden()
    resources: Unsupported = hidden()
    healthcheck: Unsupported = hidden()
    user: Unsupported = hidden()
    hostname: Unsupported = hidden()
    labels: Unsupported = hidden()
    cap_add: Unsupported = hidden()
    cap_drop: Unsupported = hidden()
    privileged: Unsupported = hidden()
    devices: Unsupported = hidden()
    dns: Unsupported = hidden()
    extra_hosts: Unsupported = hidden()
    tmpfs: Unsupported = hidden()
    read_only: Unsupported = hidden()
    stop_signal: Unsupported = hidden()
    stop_grace_period: Unsupported = hidden()
    ulimits: Unsupported = hidden()
    sysctls: Unsupported = hidden()
    init: Unsupported = hidden()
    tty: Unsupported = hidden()
    stdin_open: Unsupported = hidden()
    depends_on: Unsupported = hidden()
    expose: Unsupported = hidden()
    security_opt: Unsupported = hidden()
    logging: Unsupported = hidden()
    domainname: Unsupported = hidden()
    shm_size: Unsupported = hidden()
    secrets: Unsupported = hidden()
    configs: Unsupported = hidden()
    update_config: Unsupported = hidden()

    _reject = field_validator(*_UNSUPPORTED_SERVICE, "hostname", "dns")(not_supported)

    @model_validator(mode="before")
    @classmethod
    def _network_mode_conflicts(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        mode = data.get("network_mode")
        kind = _mode_kind(mode) if isinstance(mode, str) else None
        if kind is None:
            return data         # absent, or reported by the field validator
        for field, reasons in _CONFLICTS.items():
            if kind in reasons and _present(data.get(field)):
                raise at(field, "conflict", "{why} (network_mode: {m})",
                         why=reasons[kind], m=mode)
        return data

    @field_validator("command", "entrypoint", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # Compose semantics: a string is split like a shell would, without a shell.
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise PydanticCustomError("shell_split", "cannot split command: {e}",
                                          {"e": str(exc)}) from exc
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[str] | dict[str, str | int | float]) -> dict[str, str]:
        if isinstance(value, dict):
            return {k: str(v) for k, v in value.items()}
        out: dict[str, str] = {}
        for index, item in enumerate(value):
            key, sep, val = item.partition("=")
            if not sep or not key:
                raise PydanticCustomError("env", 'item {i}: expected KEY=VALUE, got "{item}"',
                                          {"i": index, "item": item})
            out[key] = val
        return out

    @field_validator("network_mode")
    @classmethod
    def _network_mode(cls, value: str | None) -> str | None:
        if value is None or value == "bridge":
            return None         # the default network: stored like an absent network_mode
        kind = _mode_kind(value)
        if kind is None:
            raise PydanticCustomError(
                "network_mode", "unknown network_mode {m} (expected {e})",
                {"m": show(value), "e": ", ".join(NETWORK_MODES[:-1]) + " or "
                 + NETWORK_MODES[-1]})
        prefix, _, target = value.partition(":")
        if kind == _SHARED and not re.match(DNS_LABEL, target):
            what = "container" if prefix == "container" else "service"
            raise PydanticCustomError(
                "network_mode", "{p}:<name> needs a {w} name (a DNS label), got {t}",
                {"p": prefix, "w": what, "t": show(target)})
        return value

    @field_validator("networks")
    @classmethod
    def _networks(
        cls, value: list[str] | dict[str, ServiceNetwork | None]
    ) -> dict[str, ServiceNetwork]:
        if isinstance(value, list):
            if len(set(value)) != len(value):
                raise PydanticCustomError("networks", "a network is listed twice")
            return {name: ServiceNetwork() for name in value}
        return {name: opts or ServiceNetwork() for name, opts in value.items()}

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[str | int | ServicePort]) -> list[ServicePort]:
        out: list[ServicePort] = []
        where: list[int] = []       # the item each expanded port came from
        for index, item in enumerate(value):
            try:
                ports = [item] if isinstance(item, ServicePort) else parse_short(str(item))
            except PydanticCustomError as exc:
                raise at(f"[{index}]", exc.type, exc.message_template,
                         **(exc.context or {})) from exc
            for port in ports:
                for seen, earlier in zip(where, out, strict=True):
                    if overlaps(earlier, port):
                        raise at(f"[{index}]", "port", "host port {p}/{t} is published twice "
                                 "(also by spec.ports[{i}])", p=port.host_port(),
                                 t=port.protocol, i=seen)
                out.append(port)
                where.append(index)
            if len(out) > MAX_PORTS_PER_SERVICE:
                raise at(f"[{index}]", "port", "{n} ports or more, more than the limit of "
                         "{m} per service", n=len(out), m=MAX_PORTS_PER_SERVICE)
        return out

    @field_validator("endpoint_mode")
    @classmethod
    def _endpoint_mode(cls, value: str) -> str:
        if value == "vip":
            raise PydanticCustomError("ipvs", 'endpoint_mode "vip" (a virtual IP per '
                                      "service) {why}; use endpoint_mode: dnsrr (the service "
                                      "name resolves to every replica)", {"why": IPVS_MISSING})
        if value != "dnsrr":
            raise PydanticCustomError("endpoint_mode", "unknown endpoint_mode {m} (expected "
                                      "dnsrr)", {"m": show(value)})
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise PydanticCustomError("workdir", "must be an absolute path")
        return value

    def environment(self) -> dict[str, str]:
        """``env`` in its normalised mapping form."""
        return {k: str(v) for k, v in self.env.items()} if isinstance(self.env, dict) else {}

    def attachments(self) -> dict[str, ServiceNetwork]:
        """``networks`` in its normalised mapping form: name -> options."""
        if isinstance(self.networks, dict):
            return {name: opts or ServiceNetwork() for name, opts in self.networks.items()}
        return {name: ServiceNetwork() for name in self.networks}

    def published(self) -> list[ServicePort]:
        """``ports`` in its normalised form: one entry per container port."""
        return [p for p in self.ports if isinstance(p, ServicePort)]

    def shares_netns_with(self) -> tuple[str, str] | None:
        """("container", name) or ("service", name) for a container network mode."""
        if self.network_mode is None or _mode_kind(self.network_mode) != _SHARED:
            return None
        prefix, _, target = self.network_mode.partition(":")
        return prefix, target


class _Document(_Strict):
    api_version: Literal["berth/v1"] = Field(alias="apiVersion")
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_json(self) -> bytes:
        """The canonical stored form (keys sorted so equal specs compare equal)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True,
                          separators=(",", ":")).encode()


class NetworkDocument(_Document):
    kind: Literal["Network"]
    spec: NetworkSpec

    @field_validator("metadata")
    @classmethod
    def _not_reserved(cls, value: Metadata) -> Metadata:
        why = _RESERVED_WHY.get(value.name)
        if why is not None:
            raise at("name", "reserved", 'network name "{n}" is reserved: {why}',
                     n=value.name, why=why)
        return value


class ServiceDocument(_Document):
    kind: Literal["Service"]
    spec: ServiceSpec


Document = NetworkDocument | ServiceDocument
DOCUMENT_TYPES: dict[str, type[NetworkDocument] | type[ServiceDocument]] = {
    "Network": NetworkDocument,
    "Service": ServiceDocument,
}
