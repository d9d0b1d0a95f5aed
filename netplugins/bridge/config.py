"""A bridge network's settings, parsed once from NetConf, and the names berth gives to its
devices and firewall owners. Pure: used by the driver, the host and the rule renderers.

Names are derived, never stored, so DEL and teardown find everything from the network's
name and the attachment's container id and ifname alone (IFNAMSIZ: at most 15 characters):

* bridge: ``berth0`` for the node's default network ``bridge`` (like docker0), else
  ``bb-`` + 10 hex digits of sha256(network name);
* host veth: ``v`` + 6 hex of sha256(network name) + 8 hex of sha256(container/ifname),
  so every port of one bridge starts with the same ``v<6 hex>`` (the icc rule matches on it);
* firewall owners: the bridge name for the network, ``c-`` + the veth's 14 hex for the
  container's port rules (so a stale one is recognised by its missing veth).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from berth.manifest_model import DEFAULT_NETWORK
from netplugins.contract import Attachment, NetConf, PortMap, Underlay
from netplugins.errors import NetworkConfigError
from netplugins.firewall import NodePorts

DEFAULT_BRIDGE = "berth0"
CONTAINER_OWNER_PREFIX = "c-"
VETH_PREFIX = "v"
OPTIONS = {"icc": ("true", "false")}
MIN_MTU, MAX_MTU = 68, 65535


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def bridge_name(network: str) -> str:
    return DEFAULT_BRIDGE if network == DEFAULT_NETWORK else "bb-" + _hex(network, 10)


def port_prefix(network: str) -> str:
    """What every host veth of this network's containers starts with."""
    return VETH_PREFIX + _hex(network, 6)


def veth_name(network: str, att: Attachment) -> str:
    return port_prefix(network) + _hex(f"{att.container_id}/{att.ifname}", 8)


def container_owner(network: str, att: Attachment) -> str:
    return CONTAINER_OWNER_PREFIX + veth_name(network, att)[len(VETH_PREFIX):]


def veth_of_owner(owner: str) -> str:
    """The host veth whose existence keeps a container owner alive."""
    return VETH_PREFIX + owner[len(CONTAINER_OWNER_PREFIX):]


@dataclass(frozen=True)
class BridgeConf:
    """One bridge network on this host, validated."""

    network: str
    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    mtu: int
    icc: bool
    internal: bool

    @property
    def gateway_cidr(self) -> str:
        return f"{self.gateway}/{self.subnet.prefixlen}"

    @classmethod
    def of(cls, net: NetConf, underlay: Underlay) -> BridgeConf:
        where = f"network {net.name}"
        try:
            subnet = ipaddress.IPv4Network(net.subnet)
        except ValueError as exc:
            raise NetworkConfigError(f"{where}: subnet {net.subnet!r} is not an IPv4 network: "
                                     f"{exc}") from exc
        if subnet.num_addresses < 4:
            raise NetworkConfigError(f"{where}: subnet {subnet} has no room for a gateway "
                                     "and a container")
        gateway = _gateway(where, subnet, net.gateway)
        mtu = net.mtu or underlay.mtu
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise NetworkConfigError(f"{where}: MTU {mtu} is outside {MIN_MTU}..{MAX_MTU}")
        options = _options(where, net.options)
        return cls(net.name, bridge_name(net.name), subnet, gateway, mtu,
                   icc=options.get("icc", "true") == "true", internal=net.internal)

    def check_attachment(self, att: Attachment, reserved: NodePorts | None = None) -> None:
        """Refuse an attachment this network cannot carry, with one clear reason.

        ``reserved``: the node's own ports (netplugins.firewall.nodeports), which a DNAT
        would steal from berth or etcd, so they are never published.
        """
        where = f"network {self.network}: {att.container_name}"
        try:
            ip = ipaddress.IPv4Address(att.ip)
        except ValueError as exc:
            raise NetworkConfigError(f"{where}: address {att.ip!r} is not IPv4") from exc
        if ip not in self.subnet or att.prefixlen != self.subnet.prefixlen:
            raise NetworkConfigError(f"{where}: address {att.cidr} is not in {self.subnet}")
        if ip in (self.gateway, self.subnet.network_address, self.subnet.broadcast_address):
            raise NetworkConfigError(f"{where}: address {ip} is reserved on {self.subnet}")
        if not att.ports:
            return
        if self.internal:
            raise NetworkConfigError(f"{where}: cannot publish ports on an internal network "
                                     "(it has no way in or out)")
        if not att.default_route:
            raise NetworkConfigError(f"{where}: ports are published only on the attachment "
                                     "that carries the default route")
        for port in att.ports:
            _check_port(where, port)
            if reserved is not None and reserved.reserved(port.host_port, port.protocol):
                raise NetworkConfigError(
                    f"{where}: host port {port.host_port}/{port.protocol} is one of this "
                    "node's berth or etcd ports, which containers may not take; publish "
                    "another")


def _gateway(where: str, subnet: ipaddress.IPv4Network, raw: str) -> ipaddress.IPv4Address:
    if not raw:
        return next(subnet.hosts())
    try:
        gateway = ipaddress.IPv4Address(raw)
    except ValueError as exc:
        raise NetworkConfigError(f"{where}: gateway {raw!r} is not an IPv4 address") from exc
    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise NetworkConfigError(f"{where}: gateway {gateway} is not a host of {subnet}")
    return gateway


def _options(where: str, options: Mapping[str, str]) -> dict[str, str]:
    for key, value in options.items():
        if key not in OPTIONS:
            raise NetworkConfigError(f"{where}: unknown bridge option {key!r} "
                                     f"(known: {', '.join(sorted(OPTIONS))})")
        if value not in OPTIONS[key]:
            raise NetworkConfigError(f"{where}: option {key} must be "
                                     f"{' or '.join(OPTIONS[key])}, got {value!r}")
    return dict(options)


def _check_port(where: str, port: PortMap) -> None:
    if port.protocol not in ("tcp", "udp"):
        raise NetworkConfigError(f"{where}: port protocol must be tcp or udp, "
                                 f"got {port.protocol!r}")
    for what, value in (("host", port.host_port), ("container", port.container_port)):
        if not 1 <= value <= 65535:
            raise NetworkConfigError(f"{where}: {what} port {value} is outside 1..65535")
    if port.host_ip:
        try:
            ipaddress.IPv4Address(port.host_ip)
        except ValueError as exc:
            raise NetworkConfigError(f"{where}: host address {port.host_ip!r} is not IPv4"
                                     ) from exc
