"""Records that travel through etcd as JSON, parsed once where they enter.

The controller writes ``ContainerSpec`` (under /berth/assign/) and reads
``ContainerStatus``; the agent does the reverse. ``NodeRecord`` is written by
the agent under its lease. ``Endpoint`` is what peers program into their
neighbour/FDB tables and DNS. See keyspace.py for where each one lives.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from berth.lifecycle import ContainerState
from berth.manifest_model import DEFAULT_NETWORK, GATEWAY_NETWORK


def load_error(exc: ValidationError) -> str:
    """One line for a record that did not load: the first problem and where it is."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{first['msg']}{more}"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> _Record:
        return cls.model_validate_json(raw)


class NetworkAttachment(_Record):
    """One container's place on one network, decided by the controller (IPAM).

    The network's own settings that a driver needs (``internal``, ``options``, ``mtu``)
    are copied in, so the agent builds the driver's NetConf from the attachment alone.
    ``default_route`` marks the one attachment (at most) whose gateway is the
    container's default route; published ports are DNATed to that attachment's address.
    """

    network: str
    driver: str
    ip: str = ""           # address inside the subnet, no prefix length
    prefixlen: int = 0
    gateway: str = ""
    mac: str = ""
    vni: int = 0
    aliases: tuple[str, ...] = ()
    internal: bool = False
    options: dict[str, str] = Field(default_factory=dict)
    mtu: int = 0           # 0: the driver derives it from the parent or underlay
    default_route: bool = False


class PortMapping(_Record):
    """One published port of one container, as the scheduler decided it.

    ``host_port`` is always filled in: a port the service left random was picked by the
    scheduler (32768-60999) and is stored here, so it survives restarts.
    """

    container_port: int
    host_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = ""      # "": every address of the node


class ContainerSpec(_Record):
    """What the scheduler placed on a node: enough to run the container."""

    name: str
    service: str
    node: str
    image: str
    command: tuple[str, ...] | None = None      # overrides the image's Cmd
    entrypoint: tuple[str, ...] | None = None   # overrides the image's Entrypoint
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    networks: tuple[NetworkAttachment, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    # "": its own netns with ``networks`` (the default bridge when the service lists none);
    # "none": its own netns with only lo; "host": the node's netns;
    # "container:<container>": the netns of that container, on the same node.
    network_mode: str = ""
    generation: int = 1

    @classmethod
    def loads(cls, raw: bytes | str) -> ContainerSpec:
        return cls.model_validate_json(raw)


class ContainerStatus(_Record):
    """What the agent observed, written only by the agent running the container."""

    name: str
    node: str
    state: ContainerState
    pid: int = 0
    exit_code: int | None = None
    started_at: str = ""     # RFC 3339, UTC
    finished_at: str = ""
    error: str = ""
    restarts: int = 0
    networks: dict[str, str] = Field(default_factory=dict)   # network -> ip
    generation: int = 0

    @classmethod
    def loads(cls, raw: bytes | str) -> ContainerStatus:
        return cls.model_validate_json(raw)


class HostPrefix(_Record):
    """An IPv4 prefix a node uses itself: an interface address or a route's destination."""

    cidr: str                 # "10.0.0.2/24" for an address, "10.8.0.0/16" for a route
    device: str = ""


class DriverSupport(_Record):
    """Whether this node can offer a network driver (or a mode of one), and why not."""

    name: str                 # "bridge", "overlay", "macvlan", "macvlan 802.1q"
    reason: str = ""          # "": it can; else why not ("no kernel support")


class HostFacts(_Record):
    """What the agent found about its host at start (agent.hostfacts): ``clusterctl info``."""

    version: str = ""         # berth's version on the node
    kernel: str = ""          # uname release
    cgroup: str = ""          # "v2", "v1" (hybrid hosts count as v1)
    runtime: str = ""         # the OCI runtime's path and its version line
    drivers: tuple[DriverSupport, ...] = ()


class NodeRecord(_Record):
    """A node as its agent announces it, attached to the agent's lease.

    ``addresses`` and ``routes`` are what a container network must not overlap: the
    node's own IPv4 addresses (not loopback) and the destinations of its non-default
    routes, both without anything on berth's own devices. Agents older than these
    fields report neither, which reads as "nothing to avoid".
    """

    name: str
    address: str              # underlay IP
    agent_addr: str           # host:port of the agent's gRPC API
    mtu: int = 1500
    cpus: int = 0
    memory_bytes: int = 0
    started_at: str = ""
    addresses: tuple[HostPrefix, ...] = ()
    routes: tuple[HostPrefix, ...] = ()
    # The node-local implicit networks, as gateway CIDRs ("172.17.0.1/16"): the default
    # network ``bridge`` (the agent's ``bip``) and the gateway bridge that gives overlay
    # containers egress and published ports. "" from agents that predate them.
    bip: str = ""
    gwbridge: str = ""
    # The agent's configured node labels (agent.json "labels", --label) and host facts.
    labels: dict[str, str] = Field(default_factory=dict)
    facts: HostFacts = Field(default_factory=HostFacts)

    @classmethod
    def loads(cls, raw: bytes | str) -> NodeRecord:
        return cls.model_validate_json(raw)

    def overlap(self, subnet: ipaddress.IPv4Network, *, underlay: bool = True) -> str | None:
        """What of this node ``subnet`` collides with, in words, or None.

        The node's implicit networks (``bip``, ``gwbridge``) always count. ``underlay=False``
        skips the node's own addresses and routes: a macvlan network lives on the LAN of
        its parent interface, so sharing that subnet is its point.
        """
        if underlay:
            clash = self._underlay_overlap(subnet)
            if clash is not None:
                return clash
        for label, name in (("default network bridge", DEFAULT_NETWORK),
                            ("gateway bridge", GATEWAY_NETWORK)):
            iface = self.implicit_network(name)
            if iface is not None and subnet.overlaps(iface.network):
                return f"node {self.name}'s {label} {iface.network}"
        return None

    def _underlay_overlap(self, subnet: ipaddress.IPv4Network) -> str | None:
        for prefix in self.addresses:
            try:
                iface = ipaddress.IPv4Interface(prefix.cidr)
            except ValueError:
                continue        # written by an agent; a bad entry cannot be avoided
            if subnet.overlaps(iface.network):
                return f"node {self.name}'s address {prefix.cidr}{_on(prefix.device)}"
        for prefix in self.routes:
            try:
                dest = ipaddress.IPv4Network(prefix.cidr, strict=False)
            except ValueError:
                continue
            if dest.prefixlen and subnet.overlaps(dest):
                return f"node {self.name}'s route to {prefix.cidr}{_on(prefix.device)}"
        return None

    def implicit_network(self, name: str) -> ipaddress.IPv4Interface | None:
        """The gateway CIDR of ``bridge`` (bip) or ``berth-gwbridge`` on this node.

        None when the agent reports none (it predates them) or reports garbage.
        """
        cidr = {DEFAULT_NETWORK: self.bip, GATEWAY_NETWORK: self.gwbridge}.get(name, "")
        try:
            iface = ipaddress.IPv4Interface(cidr) if cidr else None
        except ValueError:
            return None
        if iface is None or iface.network.prefixlen > 30 or iface.ip in (
                iface.network.network_address, iface.network.broadcast_address):
            return None
        return iface


def _on(device: str) -> str:
    return f" on {device}" if device else ""


class Endpoint(_Record):
    """A running container's address on one network, as peers must program it."""

    network: str
    container: str
    service: str
    node: str
    ip: str
    mac: str
    host_ip: str              # the node's underlay IP (VTEP)
    aliases: tuple[str, ...] = ()

    @classmethod
    def loads(cls, raw: bytes | str) -> Endpoint:
        return cls.model_validate_json(raw)


class ImageRecord(_Record):
    """An image the cluster knows, by reference, with its content digest."""

    ref: str
    digest: str               # sha256:... of the tar the controller holds
    size: int

    @classmethod
    def loads(cls, raw: bytes | str) -> ImageRecord:
        return cls.model_validate_json(raw)
