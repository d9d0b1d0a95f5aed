"""The manifest v1 model: what `clusterctl apply -f` sends and the controller stores.

Owned by berth so that the controller (validation, desired state in etcd) and
clusterctl (client-side checks, JSON Schema) share one definition. Callers
import from ``berth.manifest``, which adds loading and one-line errors.

Design notes:
- Every model is strict and forbids extra keys: ``replicas: "2"`` is a wrong
  type, not a 2, and a misspelled key is an "unknown field".
- Fields the brief names but berth does not implement yet are declared (hidden
  from the JSON Schema, never serialised) only so that they fail with "not
  supported yet" instead of "unknown field": the user learns the feature is
  planned, not that they mistyped it. A ``null`` value counts as absent.
- Inputs that Compose accepts in two shapes (``env`` list or mapping,
  ``networks`` list or mapping, ``command`` string or list) are validated as a
  tagged union so errors keep a precise path, then normalised to one shape so
  that re-applying an equivalent file is "unchanged".
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

API_VERSION = "berth/v1"
KINDS = ("Network", "Service")

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL)]

# Node-local networks berth makes itself, never stored in etcd: the default network a
# service without ``networks`` joins (Docker's ``bridge``/docker0), and the gateway bridge
# that gives overlay containers egress and published ports (Docker's docker_gwbridge).
DEFAULT_NETWORK = "bridge"
GATEWAY_NETWORK = "berth-gwbridge"
# Names a Network document may not take (Docker reserves bridge, host and none too).
RESERVED_NETWORK_NAMES = (DEFAULT_NETWORK, GATEWAY_NETWORK, "host", "none")

# Drivers the brief names; only these are implemented so far.
NETWORK_DRIVERS = ("overlay", "bridge", "macvlan", "host", "none")
IMPLEMENTED_DRIVERS = ("overlay",)

_UNSUPPORTED_SERVICE = (
    "ports", "volumes", "restart", "resources", "healthcheck", "network_mode", "user",
    "hostname", "labels", "cap_add", "cap_drop", "privileged", "devices", "dns",
    "extra_hosts", "tmpfs", "read_only", "stop_signal", "stop_grace_period", "ulimits",
    "sysctls", "init", "tty", "stdin_open", "depends_on", "expose", "security_opt",
    "logging", "domainname", "shm_size", "secrets", "configs", "update_config",
)
_UNSUPPORTED_NETWORK = ("ipv6", "internal", "attachable", "mtu", "ip_range", "labels")
_UNSUPPORTED_PLACEMENT = ("constraints", "spread")

Unsupported = SkipJsonSchema[object]

# Ranges a container network can never use, whatever the hosts look like: they are routed
# specially by every host (RFC 6890). Overlap with a node's own addresses and routes is
# checked at apply against the Ready nodes (controller/store.py), and by the scheduler for
# nodes that join later. A macvlan network will be allowed its parent's LAN subnet once
# that driver exists; this list still applies to it.
BROADEST_PREFIX = 8
_UNUSABLE: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(cidr), why) for cidr, why in (
        ("0.0.0.0/8", "the unspecified \"this network\" range"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (includes broadcast 255.255.255.255)"),
    ))


def unusable_subnet(net: ipaddress.IPv4Network) -> str | None:
    """Why ``net`` cannot be a container network on any host, or None if it can."""
    if net.prefixlen == 0:
        return f"{net} is the default route"
    if net.prefixlen < BROADEST_PREFIX:
        return f"{net} is broader than /{BROADEST_PREFIX}"
    for bad, why in _UNUSABLE:
        if net.overlaps(bad):
            return f"{net} overlaps {bad} ({why})"
    return None


def _not_supported(value: object) -> object:
    if value is not None:
        raise PydanticCustomError("not_supported", "not supported yet")
    return value


def _hidden() -> Any:
    return Field(default=None, exclude=True)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Metadata(_Strict):
    name: DnsLabel = Field(description="DNS label: lower-case letters, digits and '-'")
    labels: dict[str, str] = Field(default_factory=dict)


class NetworkSpec(_Strict):
    driver: str = "overlay"
    subnet: str = Field(description="IPv4 CIDR, e.g. 10.42.0.0/24")
    gateway: str | None = Field(default=None, description="default: the first host address")
    options: dict[str, str] = Field(default_factory=dict)

    ipv6: Unsupported = _hidden()
    internal: Unsupported = _hidden()
    attachable: Unsupported = _hidden()
    mtu: Unsupported = _hidden()
    ip_range: Unsupported = _hidden()
    labels: Unsupported = _hidden()

    _reject = field_validator(*_UNSUPPORTED_NETWORK)(_not_supported)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value in IMPLEMENTED_DRIVERS:
            return value
        if value in NETWORK_DRIVERS:
            raise PydanticCustomError("not_supported", 'driver "{d}" is not supported yet',
                                      {"d": value})
        raise PydanticCustomError("unknown_driver", 'unknown driver "{d}" (expected one of {e})',
                                  {"d": value, "e": ", ".join(NETWORK_DRIVERS)})

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise PydanticCustomError("subnet", "not an IPv4 CIDR: {e}", {"e": str(exc)}) from exc
        if net.prefixlen > 30:
            raise PydanticCustomError("subnet", "subnet {s} is too small (at most /30)",
                                      {"s": str(net)})
        why = unusable_subnet(net)
        if why is not None:
            raise PydanticCustomError("subnet", "{w}, not usable for containers; pick a "
                                      "private range such as 10.42.0.0/24", {"w": why})
        return str(net)

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, str]) -> dict[str, str]:
        if value:
            raise PydanticCustomError("not_supported", "network options are not supported yet")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_gateway(cls, data: object) -> object:
        # Fill the gateway before validation so the stored spec is explicit
        # and an omitted gateway re-applies as "unchanged".
        if isinstance(data, dict) and data.get("gateway") is None:
            subnet = data.get("subnet")
            if isinstance(subnet, str):
                try:
                    net = ipaddress.IPv4Network(subnet, strict=True)
                except ValueError:
                    return data     # the subnet validator reports it
                if net.prefixlen <= 30:
                    return {**data, "gateway": str(net.network_address + 1)}
        return data

    @field_validator("gateway")
    @classmethod
    def _gateway_inside(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            gw = ipaddress.IPv4Address(value)
        except ValueError as exc:
            raise PydanticCustomError("gateway", "not an IPv4 address: {e}",
                                      {"e": str(exc)}) from exc
        subnet = info.data.get("subnet")
        if subnet is None:
            return str(gw)      # the subnet was invalid and is reported on its own
        net = ipaddress.IPv4Network(subnet)
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise PydanticCustomError("gateway", "{g} is not a host address of {s}",
                                      {"g": str(gw), "s": subnet})
        return str(gw)

    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)


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
    constraints: Unsupported = _hidden()
    spread: Unsupported = _hidden()

    _reject = field_validator(*_UNSUPPORTED_PLACEMENT)(_not_supported)


def _shape(value: object) -> str | None:
    if isinstance(value, list):
        return "<list>"
    if isinstance(value, dict):
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


class ServiceSpec(_Strict):
    replicas: int = Field(default=1, ge=0)
    image: str = Field(min_length=1)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: EnvInput = Field(default_factory=dict)
    workdir: str | None = None
    networks: NetworksInput = Field(default_factory=dict)
    placement: Placement = Field(default_factory=Placement)

    ports: Unsupported = _hidden()
    volumes: Unsupported = _hidden()
    restart: Unsupported = _hidden()
    resources: Unsupported = _hidden()
    healthcheck: Unsupported = _hidden()
    network_mode: Unsupported = _hidden()
    user: Unsupported = _hidden()
    hostname: Unsupported = _hidden()
    labels: Unsupported = _hidden()
    cap_add: Unsupported = _hidden()
    cap_drop: Unsupported = _hidden()
    privileged: Unsupported = _hidden()
    devices: Unsupported = _hidden()
    dns: Unsupported = _hidden()
    extra_hosts: Unsupported = _hidden()
    tmpfs: Unsupported = _hidden()
    read_only: Unsupported = _hidden()
    stop_signal: Unsupported = _hidden()
    stop_grace_period: Unsupported = _hidden()
    ulimits: Unsupported = _hidden()
    sysctls: Unsupported = _hidden()
    init: Unsupported = _hidden()
    tty: Unsupported = _hidden()
    stdin_open: Unsupported = _hidden()
    depends_on: Unsupported = _hidden()
    expose: Unsupported = _hidden()
    security_opt: Unsupported = _hidden()
    logging: Unsupported = _hidden()
    domainname: Unsupported = _hidden()
    shm_size: Unsupported = _hidden()
    secrets: Unsupported = _hidden()
    configs: Unsupported = _hidden()
    update_config: Unsupported = _hidden()

    _reject = field_validator(*_UNSUPPORTED_SERVICE)(_not_supported)

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


class ServiceDocument(_Document):
    kind: Literal["Service"]
    spec: ServiceSpec


Document = NetworkDocument | ServiceDocument
DOCUMENT_TYPES: dict[str, type[NetworkDocument] | type[ServiceDocument]] = {
    "Network": NetworkDocument,
    "Service": ServiceDocument,
}
