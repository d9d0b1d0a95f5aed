"""Host ports per node: which are published, by whom, and a random one when asked.

Called by placement.py while it plans one pass. The table starts from every kept
assignment's ``ContainerSpec.ports`` and takes this pass's decisions as they are made, so
two containers of one pass never get the same port either.

Rules:
- Two bindings conflict when they share the protocol and the host port, and their host
  addresses overlap: "" (every address) overlaps every address; two different
  addresses do not.
- A random port (a service port without ``published``) is the lowest port of
  32768-60999 (Linux's default ephemeral range, Docker's too) that conflicts with
  nothing on the node. A container keeps the random port it already has (its previous
  spec's mapping for the same container port, protocol and address) while that stays
  free, so a re-plan never moves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from berth.manifest import ServicePort
from berth.records import PortMapping

RANDOM_PORTS = range(32768, 61000)


@dataclass(frozen=True)
class Binding:
    container: str
    port: PortMapping


def _clash(a: PortMapping, b: PortMapping) -> bool:
    return (a.host_port == b.host_port and a.protocol == b.protocol
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def shown(port: PortMapping) -> str:
    host = f"{port.host_ip}:" if port.host_ip else ""
    return f"{host}{port.host_port}/{port.protocol}"


@dataclass
class PortTable:
    """node -> the bindings published there."""

    nodes: dict[str, list[Binding]] = field(default_factory=dict)

    def add(self, node: str, container: str, ports: Iterable[PortMapping]) -> None:
        self.nodes.setdefault(node, []).extend(Binding(container, p) for p in ports)

    def drop(self, node: str, container: str) -> None:
        self.nodes[node] = [b for b in self.nodes.get(node, []) if b.container != container]

    def holder(self, node: str, port: PortMapping, container: str) -> str | None:
        """Another container publishing a port that ``port`` would clash with."""
        for binding in self.nodes.get(node, ()):
            if binding.container != container and _clash(binding.port, port):
                return binding.container
        return None

    def fixed_conflict(self, node: str, wanted: Sequence[ServicePort],
                       container: str) -> str | None:
        """Why ``container`` cannot publish ``wanted``'s fixed ports on ``node``, or None."""
        for port in wanted:
            host_port = port.host_port()
            if host_port is None:
                continue
            mapping = _mapping(port, host_port)
            other = self.holder(node, mapping, container)
            if other is not None:
                return f"node {node}: host port {shown(mapping)} is published by {other}"
        return None

    def mappings(
        self, node: str, wanted: Sequence[ServicePort], container: str,
        previous: Sequence[PortMapping] = (),
    ) -> tuple[PortMapping, ...] | str:
        """The container's bindings on ``node``, random ports picked; or why none fit."""
        conflict = self.fixed_conflict(node, wanted, container)
        if conflict is not None:
            return conflict
        chosen: list[PortMapping] = [_mapping(p, h) for p in wanted
                                     if (h := p.host_port()) is not None]
        spare = list(previous)
        out: list[PortMapping] = []
        for port in wanted:
            host_port = port.host_port()
            if host_port is None:
                picked = self._random(node, port, container, chosen, spare)
                if picked is None:
                    return (f"node {node}: no free host port left in "
                            f"{RANDOM_PORTS.start}-{RANDOM_PORTS.stop - 1}/{port.protocol}")
                chosen.append(picked)
                out.append(picked)
            else:
                out.append(_mapping(port, host_port))
        return tuple(out)

    def _random(
        self, node: str, port: ServicePort, container: str, chosen: list[PortMapping],
        spare: list[PortMapping],
    ) -> PortMapping | None:
        def free(candidate: PortMapping) -> bool:
            return (self.holder(node, candidate, container) is None
                    and not any(_clash(candidate, c) for c in chosen))

        for old in spare:
            if (old.container_port, old.protocol, old.host_ip) == (
                    port.target, port.protocol, port.host_ip) and \
                    old.host_port in RANDOM_PORTS and free(old):
                spare.remove(old)
                return old
        taken = {b.port.host_port for b in self.nodes.get(node, ())
                 if b.container != container and b.port.protocol == port.protocol}
        taken |= {c.host_port for c in chosen if c.protocol == port.protocol}
        for number in RANDOM_PORTS:
            if number not in taken:
                return _mapping(port, number)
        return None


def _mapping(port: ServicePort, host_port: int) -> PortMapping:
    protocol = "udp" if port.protocol == "udp" else "tcp"
    return PortMapping(container_port=port.target, host_port=host_port,
                       protocol=protocol, host_ip=port.host_ip)
