"""What netcheck knows about a network, parsed once from the controller's answer, and
what it expects of each driver.

clusterctl.netcheck parses the NetCheck response with ``network_from_proto``;
clusterctl.netdiagnosis reasons over these values. ``EXPECTATIONS`` is the one table
that says, per driver (and for the two implicit node-local networks), which pairs must
connect, which must stay apart and which are not probed; ``select`` picks the containers
to probe from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from berth.manifest_model import DEFAULT_NETWORK, GATEWAY_NETWORK
from protos import netcheck_pb2


@dataclass(frozen=True)
class Member:
    """A running container on the network."""

    container: str
    node: str
    ip: str
    mac: str
    host_ip: str                       # its node's underlay address (VTEP)
    tcp_ports: tuple[int, ...] = ()    # container ports it publishes over TCP

    @property
    def label(self) -> str:
        return f"{self.container}@{self.node}"


@dataclass(frozen=True)
class Link:
    name: str
    want_kind: str
    present: bool
    kind: str = ""
    up: bool = False
    master: str = ""


@dataclass(frozen=True)
class Route:
    dst: str
    device: str = ""
    gateway: str = ""


@dataclass(frozen=True)
class NameRecord:
    name: str
    ips: tuple[str, ...]               # what the node's embedded DNS serves on the network
    endpoint: bool = False             # the node's agent knows the endpoint
    endpoint_ip: str = ""


@dataclass(frozen=True)
class LocalIf:
    container: str
    attached: bool
    host_ifname: str = ""
    present: bool = False
    up: bool = False
    master: str = ""
    resolver: bool = False


@dataclass(frozen=True)
class Facts:
    """One node's facts about one network (or why there are none: ``error``)."""

    node: str
    error: str = ""
    host_ip: str = ""
    links: tuple[Link, ...] = ()
    fdb: Mapping[str, frozenset[str]] = field(default_factory=dict)   # MAC -> VTEPs
    neigh: Mapping[str, str] = field(default_factory=dict)           # IP -> MAC
    routes: tuple[Route, ...] = ()     # host routes into the subnet
    names: Mapping[str, NameRecord] = field(default_factory=dict)
    locals: Mapping[str, LocalIf] = field(default_factory=dict)

    def link(self, kind: str) -> Link | None:
        """The driver device expected to be of ``kind`` (bridge, vxlan), if it has one."""
        return next((lk for lk in self.links if lk.want_kind == kind), None)


class Want(enum.StrEnum):
    YES = "yes"          # must work
    NO = "no"            # must not work: working is an isolation failure
    SKIP = "skip"        # not probed


@dataclass(frozen=True)
class PairRule:
    dns: Want            # the peer's container name resolves to its address
    traffic: Want        # ICMP and TCP to its published ports


@dataclass(frozen=True)
class Expectation:
    same_node: PairRule
    cross_node: PairRule
    per_node: int = 1    # containers probed per node (2 where same-node pairs matter)
    why: str = ""

    def rule(self, src: Member, dst: Member) -> PairRule:
        return self.same_node if src.node == dst.node else self.cross_node


_ALL = PairRule(Want.YES, Want.YES)
_NONE = PairRule(Want.SKIP, Want.SKIP)

EXPECTATIONS: Mapping[str, Expectation] = {
    "overlay": Expectation(_ALL, _ALL, why="one L2 segment across hosts"),
    "macvlan": Expectation(_ALL, _ALL, why="containers meet on the underlay LAN"),
    # Node-local: each node reuses the subnet, so an address on another node means
    # nothing here; only that names of other nodes do not resolve is checked.
    "bridge": Expectation(_ALL, PairRule(Want.NO, Want.SKIP), per_node=2,
                          why="node-local: names of other nodes must not resolve"),
}
IMPLICIT: Mapping[str, Expectation] = {
    DEFAULT_NETWORK: Expectation(PairRule(Want.SKIP, Want.YES), _NONE, per_node=2,
                                 why="node-local, no DNS by name (like docker0)"),
    GATEWAY_NETWORK: Expectation(_NONE, _NONE,
                                 why="egress and published ports only; icc is off"),
}
UNKNOWN = Expectation(_NONE, _NONE, why="netcheck has no expectation for this driver")


@dataclass(frozen=True)
class Network:
    name: str
    driver: str
    subnet: str
    options: Mapping[str, str]
    members: tuple[Member, ...]
    facts: Mapping[str, Facts]          # by node

    @property
    def expectation(self) -> Expectation:
        base = IMPLICIT.get(self.name) or EXPECTATIONS.get(self.driver, UNKNOWN)
        if self.options.get("icc") == "false" and base.same_node.traffic is Want.YES:
            # Docker's icc=false: names still resolve, traffic between members is dropped.
            blocked = PairRule(base.same_node.dns, Want.NO)
            return Expectation(blocked, base.cross_node, base.per_node, "icc is off")
        return base


def select(net: Network) -> list[Member]:
    """The containers to probe from and to: the first ``per_node`` by name on each node."""
    per_node = net.expectation.per_node
    chosen: list[Member] = []
    taken: dict[str, int] = {}
    for m in sorted(net.members, key=lambda m: (m.node, m.container)):
        if taken.get(m.node, 0) < per_node:
            chosen.append(m)
            taken[m.node] = taken.get(m.node, 0) + 1
    return chosen


def _facts(node: netcheck_pb2.NodeFacts) -> Facts:
    f = node.facts
    fdb: dict[str, set[str]] = {}
    for e in f.fdb:
        fdb.setdefault(e.mac.lower(), set()).add(e.dst)
    return Facts(
        node=node.node, error=node.error, host_ip=f.host_ip,
        links=tuple(Link(lk.name, lk.want_kind, lk.present, lk.kind, lk.up, lk.master)
                    for lk in f.links),
        fdb={mac: frozenset(dsts) for mac, dsts in fdb.items()},
        neigh={n.ip: n.mac.lower() for n in f.neighbours},
        routes=tuple(Route(r.dst, r.device, r.gateway) for r in f.routes),
        names={n.name: NameRecord(n.name, tuple(n.ips), n.endpoint, n.endpoint_ip)
               for n in f.names},
        locals={lc.container: LocalIf(lc.container, lc.attached, lc.host_ifname, lc.present,
                                      lc.up, lc.master, lc.resolver) for lc in f.locals},
    )  # fmt: skip


def network_from_proto(net: netcheck_pb2.NetCheckNetwork) -> Network:
    members = tuple(
        Member(m.container, m.node, m.ip, m.mac.lower(), m.host_ip,
               tuple(sorted({p.container_port for p in m.ports if p.protocol in ("", "tcp")})))
        for m in net.members
    )  # fmt: skip
    return Network(
        name=net.name, driver=net.driver, subnet=net.subnet, options=dict(net.options),
        members=members, facts={n.node: _facts(n) for n in net.nodes},
    )  # fmt: skip
