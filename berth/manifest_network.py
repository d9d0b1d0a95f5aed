"""The Network document's spec: drivers, their options, and the address fields.

Re-exported by berth.manifest (import from there). The controller copies ``internal``,
``options`` and ``mtu`` into every attachment (docs/networks-design.md), so what is
accepted here is exactly what the drivers get.

Drivers (docs/manifest.md has the reference):
- ``overlay``: VXLAN across nodes; no options.
- ``bridge``: node-local, like Docker's; option ``icc`` ("true" by default, "false" blocks
  traffic between containers of the network on one node).
- ``macvlan``: on a LAN the nodes share; options ``parent`` (required: the host interface,
  ``eth0`` or a VLAN sub-interface such as ``eth0.10``) and ``mode`` (bridge by default,
  vepa, private or passthru).
- ``host`` and ``none`` are network *modes* of a service, not drivers, as in Compose.

Normalised stored form: option defaults are filled in (``icc: "true"``, ``mode: bridge``),
a YAML boolean ``icc: false`` becomes the string Docker uses, addresses are printed by
ipaddress; so an equivalent file stores the same JSON and re-applies as "unchanged".
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from berth.manifest_base import Unsupported, _Strict, at, hidden, not_supported, show

NETWORK_DRIVERS = ("overlay", "bridge", "macvlan")
# Docker's network modes that Compose also lets users write as a driver.
NETWORK_MODES_NOT_DRIVERS = ("host", "none")
MACVLAN_MODES = ("bridge", "vepa", "private", "passthru")
MIN_MTU, MAX_MTU = 68, 65535        # RFC 791's minimum; the largest an IPv4 link carries
MAX_AUX_ADDRESSES = 256

_OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "overlay": (),
    "bridge": ("icc",),
    "macvlan": ("parent", "mode"),
}
_OPTION_DEFAULTS: dict[str, dict[str, str]] = {
    "overlay": {},
    "bridge": {"icc": "true"},
    "macvlan": {"mode": "bridge"},
}
# What a Linux interface name may not hold (the kernel's dev_valid_name).
_BAD_IFNAME = re.compile(r"[/:\s]")

_UNSUPPORTED_NETWORK = ("ipv6", "attachable", "labels")

# Ranges a container network can never use, whatever the hosts look like: they are routed
# specially by every host (RFC 6890). Overlap with a node's own addresses and routes is
# checked at apply against the Ready nodes (controller/store.py), and by the scheduler for
# nodes that join later; a macvlan network shares its parent's LAN, so only its overlap
# with the nodes' implicit networks is checked.
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


def _ipv4(value: str, kind: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise PydanticCustomError(kind, "not an IPv4 address: {e}", {"e": str(exc)}) from exc


def _host_of(ip: ipaddress.IPv4Address, net: ipaddress.IPv4Network) -> bool:
    return ip in net and ip not in (net.network_address, net.broadcast_address)


class NetworkSpec(_Strict):
    driver: str = Field(default="overlay", description="overlay, bridge or macvlan",
                        json_schema_extra={"enum": list(NETWORK_DRIVERS)})
    subnet: str = Field(description="IPv4 CIDR, e.g. 10.42.0.0/24")
    gateway: str | None = Field(default=None, description="default: the first host address")
    ip_range: str | None = Field(
        default=None, description="CIDR inside the subnet: IPAM hands out addresses only "
        "from it (static ips may lie anywhere in the subnet)")
    aux_addresses: dict[str, str] = Field(
        default_factory=dict, description="name -> address inside the subnet that IPAM "
        "never hands out (routers, hosts already on a macvlan LAN)")
    internal: bool = Field(default=False, description="no egress and no published ports")
    mtu: int | None = Field(default=None, description=f"{MIN_MTU}-{MAX_MTU}; default: "
                            "the parent's or the underlay's (overlay: underlay MTU - 50)")
    options: dict[str, str] = Field(
        default_factory=dict, validate_default=True,
        description="bridge: icc (\"true\"|\"false\"); macvlan: parent (required), mode "
        "(bridge|vepa|private|passthru); overlay: none")

    ipv6: Unsupported = hidden()
    attachable: Unsupported = hidden()
    labels: Unsupported = hidden()

    _reject = field_validator(*_UNSUPPORTED_NETWORK)(not_supported)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        if value in NETWORK_DRIVERS:
            return value
        if value in NETWORK_MODES_NOT_DRIVERS:
            raise PydanticCustomError(
                "not_a_driver", 'driver "{d}" is not a network driver here: use '
                "network_mode: {d} on the service", {"d": value})
        raise PydanticCustomError("unknown_driver", "unknown driver {d} (expected one of {e})",
                                  {"d": show(value), "e": ", ".join(NETWORK_DRIVERS)})

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
        gw = _ipv4(value, "gateway")
        subnet = info.data.get("subnet")
        if subnet is None:
            return str(gw)      # the subnet was invalid and is reported on its own
        if not _host_of(gw, ipaddress.IPv4Network(subnet)):
            raise PydanticCustomError("gateway", "{g} is not a host address of {s}",
                                      {"g": str(gw), "s": subnet})
        return str(gw)

    @field_validator("ip_range")
    @classmethod
    def _ip_range(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            rng = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise PydanticCustomError("ip_range", "not an IPv4 CIDR: {e}",
                                      {"e": str(exc)}) from exc
        subnet = info.data.get("subnet")
        if subnet is not None and not rng.subnet_of(ipaddress.IPv4Network(subnet)):
            raise PydanticCustomError("ip_range", "{r} is not inside the subnet {s}",
                                      {"r": str(rng), "s": subnet})
        return str(rng)

    @field_validator("aux_addresses")
    @classmethod
    def _aux(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if len(value) > MAX_AUX_ADDRESSES:
            raise PydanticCustomError("aux_addresses", "{n} entries, more than the limit of "
                                      "{m}", {"n": len(value), "m": MAX_AUX_ADDRESSES})
        subnet = info.data.get("subnet")
        out: dict[str, str] = {}
        for name, raw in value.items():
            if not name or len(name) > 63:
                raise at(show(name), "aux_addresses", "a name is 1 to 63 characters")
            try:
                ip = ipaddress.IPv4Address(raw)
            except ValueError as exc:
                raise at(name, "aux_addresses", "not an IPv4 address: {e}",
                         e=str(exc)) from exc
            if subnet is not None and not _host_of(ip, ipaddress.IPv4Network(subnet)):
                raise at(name, "aux_addresses", "{ip} is not a host address of {s}",
                         ip=str(ip), s=subnet)
            out[name] = str(ip)
        return out

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, value: int | None) -> int | None:
        if value is not None and not MIN_MTU <= value <= MAX_MTU:
            raise PydanticCustomError("mtu", "{v} is out of range ({lo}-{hi})",
                                      {"v": show(value), "lo": MIN_MTU, "hi": MAX_MTU})
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _option_booleans(cls, value: object) -> object:
        # ``icc: false`` in YAML is a boolean; Docker's driver options are the strings.
        if isinstance(value, dict):
            return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in value.items()}
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        driver = info.data.get("driver")
        if driver not in _OPTION_NAMES:
            return value        # the driver is invalid and reported on its own
        known = _OPTION_NAMES[driver]
        for key in value:
            if key not in known:
                takes = f"it takes {', '.join(known)}" if known else "it takes none"
                raise at(key, "option", "unknown option {k} for driver {d} ({t})",
                         k=show(key), d=driver, t=takes)
        out = {**_OPTION_DEFAULTS[driver], **value}
        if driver == "bridge":
            _check_choice(out, "icc", ("true", "false"))
        elif driver == "macvlan":
            _check_parent(out.get("parent"))
            _check_choice(out, "mode", MACVLAN_MODES)
        return dict(sorted(out.items()))

    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def pool(self) -> ipaddress.IPv4Network:
        """Where IPAM hands out addresses from: ``ip_range`` if set, else the subnet."""
        return ipaddress.IPv4Network(self.ip_range or self.subnet)

    @property
    def node_local(self) -> bool:
        """Whether each node has its own copy of the subnet (IPAM per node)."""
        return self.driver == "bridge"


def _check_choice(options: dict[str, str], key: str, choices: tuple[str, ...]) -> None:
    value = options[key]
    if value not in choices:
        raise at(key, "option", "unknown {k} {v} (expected {e})", k=key, v=show(value),
                 e=", ".join(choices[:-1]) + " or " + choices[-1])


def _check_parent(parent: str | None) -> None:
    # The kernel's dev_valid_name, as the macvlan driver checks it. A VLAN id out of range
    # in ``eth0.5000`` is the driver's to refuse, and only when it must create the
    # sub-interface: an existing device of that name is used as Docker uses it.
    if parent is None:
        raise at("parent", "option", "required for driver macvlan: the host interface the "
                 "containers' MACs sit on, e.g. eth0 (or eth0.10 for VLAN 10)")
    if not 0 < len(parent.encode()) < 16 or parent in (".", "..") or _BAD_IFNAME.search(parent):
        raise at("parent", "option", "{p} is not an interface name (1-15 bytes, no '/', "
                 "':' or spaces)", p=show(parent))
