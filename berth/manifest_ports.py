"""A service's published ports: Compose's short and long syntax, parsed into one shape.

Re-exported by berth.manifest (import from there); ServiceSpec.ports validates with it.

Short syntax, as Compose and ``docker run -p`` take it:

    "80"                      container port 80 on a random host port (32768-60999)
    "8080:80"                 host port 8080 to container port 80
    "127.0.0.1:8081:80/udp"   only on that node address, UDP
    "127.0.0.1::80"           that address, a random port
    "9090-9091:8080-8081"     ranges of the same length, pairwise
    80                        a bare number is a container port too

Long syntax: ``{target: 80, published: 8080, host_ip: 127.0.0.1, protocol: udp,
mode: host}``; ``published`` may be a number or a numeric string.

Publishing is host mode only: Swarm's ingress routing mesh needs IPVS, which this kernel
lacks, so ``mode: ingress`` is refused with that reason.

Normalised stored form, one entry per container port (ranges expanded):
``{"host_ip": "", "mode": "host", "protocol": "tcp", "published": 8080, "target": 80}``;
``published`` is null for a random port (the scheduler picks it per container and
stores it in the assignment), ``host_ip`` is "" for every address of the node
(``0.0.0.0`` is written as ""). "8080:80" and its long form store the same JSON.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from berth.manifest_base import Unsupported, _Strict, hidden, not_supported, show

MIN_PORT, MAX_PORT = 1, 65535
PROTOCOLS = ("tcp", "udp")
MAX_PORTS_PER_SERVICE = 1024    # after ranges are expanded
IPVS_MISSING = "needs IPVS, which this kernel lacks"


def _port(value: int, what: str) -> int:
    if not MIN_PORT <= value <= MAX_PORT:
        raise PydanticCustomError("port", "{w} {v} is out of range ({lo}-{hi})",
                                  {"w": what, "v": show(value), "lo": MIN_PORT, "hi": MAX_PORT})
    return value


def _host_ip(value: str) -> str:
    if value.startswith("[") or ":" in value:
        raise PydanticCustomError("not_supported", "IPv6 host_ip {v} is not supported yet",
                                  {"v": show(value)})
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise PydanticCustomError("host_ip", "not an IPv4 address: {e}",
                                  {"e": str(exc)}) from exc
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise PydanticCustomError("host_ip", "{v} is not a unicast address", {"v": str(ip)})
    return "" if ip.is_unspecified else str(ip)


def _protocol(value: str) -> str:
    if value in PROTOCOLS:
        return value
    if value == "sctp":
        raise PydanticCustomError("not_supported", 'protocol "sctp" is not supported yet')
    raise PydanticCustomError("protocol", "unknown protocol {p} (expected tcp or udp)",
                              {"p": show(value)})


class ServicePort(_Strict):
    """One published port (Compose's long syntax); the short syntax is parsed into these."""

    target: int = Field(description="the container port")
    published: int | str | None = Field(
        default=None, description="the host port (number or numeric string); absent: a "
        "random port from 32768-60999, picked per container")
    host_ip: str = Field(default="", description="a node address to publish on; "
                         "default: every address")
    protocol: str = Field(default="tcp", description="tcp or udp",
                          json_schema_extra={"enum": list(PROTOCOLS)})
    mode: str = Field(default="host", description="host (ingress needs IPVS: refused)",
                      json_schema_extra={"enum": ["host"]})

    name: Unsupported = hidden()
    app_protocol: Unsupported = hidden()

    _reject = field_validator("name", "app_protocol")(not_supported)

    @field_validator("target")
    @classmethod
    def _target(cls, value: int) -> int:
        return _port(value, "container port")

    @field_validator("published")
    @classmethod
    def _published(cls, value: int | str | None) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            if not value.isascii() or not value.isdigit() or len(value) > 5:
                raise PydanticCustomError("port", "{v} is not a port number",
                                          {"v": show(value)})
            value = int(value)
        return _port(value, "host port")

    @field_validator("host_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return _host_ip(value) if value else ""

    @field_validator("protocol")
    @classmethod
    def _proto(cls, value: str) -> str:
        return _protocol(value)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value == "ingress":
            raise PydanticCustomError("ipvs", 'mode "ingress" (the routing mesh) {why}; '
                                      "publish in host mode (mode: host), on the node that "
                                      "runs the container", {"why": IPVS_MISSING})
        if value != "host":
            raise PydanticCustomError("mode", "unknown mode {m} (expected host)",
                                      {"m": show(value)})
        return value

    def host_port(self) -> int | None:
        """``published`` as validated (the field also admits a string on input)."""
        return int(self.published) if self.published is not None else None

    def shown(self) -> str:
        """``[host_ip:][published:]target/protocol`` for messages."""
        host = f"{self.host_ip}:" if self.host_ip else ""
        published = f"{self.published}:" if self.published is not None else ""
        return f"{host}{published}{self.target}/{self.protocol}"


def _span(text: str, what: str) -> range:
    """``"80"`` or ``"8000-8010"`` as a range of ports."""
    first, dash, last = text.partition("-")
    for part in (first, last) if dash else (first,):
        if not part.isascii() or not part.isdigit() or len(part) > 5:
            raise PydanticCustomError("port", "{w} {v} is not a port number or range",
                                      {"w": what, "v": show(text)})
    low, high = int(first), int(last) if dash else int(first)
    _port(low, what)
    _port(high, what)
    if high < low:
        raise PydanticCustomError("port", "{w} range {v} ends before it starts",
                                  {"w": what, "v": show(text)})
    return range(low, high + 1)


def parse_short(text: str) -> list[ServicePort]:
    """``[[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL]``, ranges allowed, expanded."""
    body, slash, protocol = text.partition("/")
    protocol = _protocol(protocol) if slash else "tcp"
    if body.startswith("["):
        raise PydanticCustomError("not_supported", "IPv6 host_ip in {v} is not supported yet",
                                  {"v": show(text)})
    parts = body.split(":")
    if len(parts) > 3:
        raise PydanticCustomError("port", "{v} is not [HOST_IP:][HOST_PORT:]CONTAINER_PORT"
                                  "[/PROTOCOL]", {"v": show(text)})
    host_ip = _host_ip(parts[0]) if len(parts) == 3 and parts[0] else ""
    published = parts[-2] if len(parts) >= 2 else ""
    targets = _span(parts[-1], "container port")
    if len(targets) > MAX_PORTS_PER_SERVICE:
        raise PydanticCustomError("port", "{v} is {n} ports, more than the limit of {m} per "
                                  "service", {"v": show(text), "n": len(targets),
                                              "m": MAX_PORTS_PER_SERVICE})
    if not published:
        return [ServicePort(target=t, host_ip=host_ip, protocol=protocol) for t in targets]
    hosts = _span(published, "host port")
    if len(hosts) != len(targets):
        raise PydanticCustomError("port", "host ports {h} and container ports {c} differ in "
                                  "length", {"h": published, "c": parts[-1]})
    return [ServicePort(target=t, published=h, host_ip=host_ip, protocol=protocol)
            for h, t in zip(hosts, targets, strict=True)]


def overlaps(a: ServicePort, b: ServicePort) -> bool:
    """Whether two fixed ports would bind the same host port: "" overlaps every address."""
    return (a.published is not None and a.host_port() == b.host_port()
            and a.protocol == b.protocol
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))
