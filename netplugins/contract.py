"""The driver contract: what the agent hands a network driver and what it gets back.

Modelled on CNI. The agent calls, per container and network:

* ``Driver.add(att, net) -> AttachResult`` when the container's netns exists and before the
  container process runs; it stores ``result.to_json()`` next to the container's state.
* ``Driver.check(att, net, prev)`` once per agent life per running container: the first
  pass that sees it running after the agent started (adoption after a restart, or right
  after its own ADD). A ``CheckFailedError`` says what is missing, and the agent answers
  with DEL then ADD. Host-wide state is repaired by the ``NetworkHost`` resync instead.
* ``Driver.delete(att, net, prev)`` when the container stops or is removed, with the stored
  result or ``None`` if it was lost. DEL may be called any number of times.

Host-wide work for one network (a bridge, a VXLAN device, peer FDB/ARP entries) sits behind
``NetworkHost``, which the agent creates per network that has local endpoints, like flannel's
``backend.Network``. Peers come in through ``PeerSource``, the only view of etcd a driver gets.

Nothing here imports pyroute2: the agent and tests can build these values without a kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType, Protocol

import pydantic

from berth.netaddr import mac_from_ip as mac_from_ip  # one definition, re-exported for drivers
from netplugins.errors import ResultFormatError
from netplugins.firewall import Firewall

ContainerId = NewType("ContainerId", str)


@dataclass(frozen=True)
class PortMap:
    """One published port: host_ip:host_port/protocol on the host to the container's ip."""

    host_port: int
    container_port: int
    protocol: str = "tcp"      # "tcp" or "udp"
    host_ip: str = ""          # "": every address of the host


@dataclass(frozen=True)
class Attachment:
    """One container's interface on one network, fully decided before the driver runs."""

    container_id: ContainerId
    container_name: str
    netns: str                 # /proc/<pid>/ns/net or /run/netns/<name>
    ip: str                    # no prefix length
    prefixlen: int
    mac: str                   # already derived (mac_from_ip) by whoever allocated the IP
    ifname: str = "eth0"
    gateway: str = ""
    aliases: tuple[str, ...] = ()
    # Install the default route via ``gateway`` on this interface (one attachment at most).
    default_route: bool = False
    # Ports to publish on the host and DNAT to ``ip`` (only on a default_route attachment
    # of a driver that supports publishing; others refuse non-empty ports).
    ports: tuple[PortMap, ...] = ()

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class NetConf:
    """A network as the drivers need it (CNI calls it the network configuration); built by
    the agent from the Network manifest, whose model is berth.manifest.NetworkSpec."""

    name: str
    driver: str
    subnet: str
    gateway: str = ""
    vni: int = 0               # overlay only; allocated by the controller
    mtu: int = 0               # 0: the driver derives it (overlay: underlay MTU - 50)
    options: Mapping[str, str] = field(default_factory=dict, hash=False)
    internal: bool = False     # no egress, no published ports (Compose's ``internal``)


@dataclass(frozen=True)
class Interface:
    """An interface ADD created; ``sandbox`` is the netns path, or "" for the host side."""

    name: str
    mac: str
    sandbox: str = ""


@dataclass(frozen=True)
class IPConfig:
    address: str               # CIDR, e.g. 10.42.0.5/24
    interface: int             # index into AttachResult.interfaces
    gateway: str = ""


@dataclass(frozen=True)
class Route:
    dst: str                   # CIDR
    gw: str = ""


@dataclass(frozen=True)
class AttachResult:
    """What ADD did, stored by the agent and handed back to CHECK and DEL."""

    interfaces: tuple[Interface, ...]
    ips: tuple[IPConfig, ...]
    routes: tuple[Route, ...] = ()
    bridge: str = ""
    mtu: int = 0

    def to_json(self) -> str:
        return _RESULT_ADAPTER.dump_json(self).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> AttachResult:
        try:
            return _RESULT_ADAPTER.validate_json(raw)
        except pydantic.ValidationError as exc:
            raise ResultFormatError(f"stored attach result does not parse: {exc}") from exc

    def host_interface(self) -> Interface | None:
        return next((i for i in self.interfaces if not i.sandbox), None)


_RESULT_ADAPTER = pydantic.TypeAdapter(AttachResult)


class Driver(Protocol):
    """The CNI verbs. Implementations must be safe to call concurrently for different
    containers; the agent serialises calls for one container."""

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        """Create the interface; undo every partial step if any step fails."""
        ...

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        """Raise CheckFailedError naming what differs from ``prev``; return if all is in place."""
        ...

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        """Remove what ADD made. Idempotent and best-effort: missing pieces are not errors."""
        ...


@dataclass(frozen=True, order=True)
class Peer:
    """A container endpoint on a network, as another host must program it."""

    ip: str
    mac: str
    host_ip: str               # underlay IP of the host that runs it (its VTEP)


class PeerSource(Protocol):
    """The narrow view of the endpoint registry a NetworkHost gets (the agent adapts etcd).

    Level-triggered: ``snapshot`` is always the full current set for one network (local
    endpoints may be included; hosts skip their own), and ``wait_changed`` is only a wake-up.
    """

    async def snapshot(self) -> frozenset[Peer]:
        """Every endpoint currently registered on the network."""
        ...

    async def wait_changed(self) -> None:
        """Return when the set may have changed. Cancelled on resync timeouts."""
        ...

    async def programmed(self, peers: frozenset[Peer]) -> None:
        """Told after each successful sync: these remote peers are now reachable without an
        ARP wait, so their DNS names may be served on this host."""
        ...


class NetworkHost(Protocol):
    """Host-wide state of one network on one host (flannel's ``backend.Network``).

    The agent calls ``ensure()`` before the first ADD on the network, runs ``run(peers)`` as a
    task while the host has endpoints on it, and after the last DEL (or when the network is
    deleted) cancels that task and calls ``teardown()``.
    """

    async def ensure(self) -> None:
        """Create or repair the host devices. Idempotent."""
        ...

    async def run(self, peers: PeerSource) -> None:
        """Keep the host in line with ``peers`` until cancelled (never returns normally)."""
        ...

    async def teardown(self) -> None:
        """Remove the host devices. Idempotent."""
        ...


@dataclass(frozen=True)
class Underlay:
    """The host's underlay interface: where VXLAN packets leave and what MTU it has."""

    ip: str
    ifname: str
    mtu: int


@dataclass(frozen=True)
class HostContext:
    """What every driver and network host is built with.

    ``host_netns`` is None for the real agent, which already runs inside its host's network
    namespace; tests (and any caller outside it) pass a netns path or /run/netns name.
    ``firewall`` is the node's one packet-filter gate (netplugins.firewall), made here for
    ``host_netns``, so each HostContext, like each agent life, has its own.
    """

    underlay: Underlay
    host_netns: str | None = None
    firewall: Firewall = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Building a Firewall runs nothing; it only records where its commands will run.
        object.__setattr__(self, "firewall", Firewall(self.host_netns))
