"""Which networks a replica joins, and which one carries its default route (and ports).

Called by placement.py (every ContainerSpec it builds) and store.py (apply refuses ports
that cannot land). Pure functions of the service and the Network documents; the rules
are docs/networks-design.md's:

- ``network_mode`` host, none or container:/service: joins no network at all.
- A service with no ``networks`` joins the implicit ``bridge`` on its node (Docker's
  docker0): driver bridge, icc on, egress on.
- Otherwise its networks, each carrying the network's ``internal``, ``options`` and
  ``mtu``, so the agent builds the driver's NetConf from the attachment alone.
- The default route goes to the first network by name that is bridge or macvlan and not
  internal. A replica left without one whose overlays are not all internal also joins
  ``berth-gwbridge`` (Docker's docker_gwbridge), which carries the route, egress and the
  published ports. Publishing alone does not bring the gateway bridge in: a replica on
  internal networks only would get egress through it, so apply refuses such ports
  (``ports_problem``), as it refuses ports whose route goes to a macvlan network.

Attachments are sorted by network name (the agent names interfaces eth0, eth1, ... in
that order). IPAM (ipam.py) fills addresses later.
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.manifest import (
    DEFAULT_NETWORK,
    GATEWAY_NETWORK,
    NetworkDocument,
    ServiceDocument,
    ServiceNetwork,
)
from berth.records import NetworkAttachment

IMPLICIT_NETWORKS = (DEFAULT_NETWORK, GATEWAY_NETWORK)
# Drivers whose gateway can be a container's default route.
ROUTED_DRIVERS = ("bridge", "macvlan")
# Drivers with one IPAM per node: each node reuses the subnet.
NODE_LOCAL_DRIVERS = ("bridge",)

_IMPLICIT: dict[str, NetworkAttachment] = {
    # Like docker0: containers on one node talk to each other.
    DEFAULT_NETWORK: NetworkAttachment(network=DEFAULT_NETWORK, driver="bridge",
                                       options={"icc": "true"}),
    # Like docker_gwbridge: only a way out (and in, for published ports), never between
    # containers, which have their overlays for that.
    GATEWAY_NETWORK: NetworkAttachment(network=GATEWAY_NETWORK, driver="bridge",
                                       options={"icc": "false"}),
}


def is_node_local(att: NetworkAttachment) -> bool:
    return att.driver in NODE_LOCAL_DRIVERS


def intent(name: str, net: NetworkDocument, opts: ServiceNetwork) -> NetworkAttachment:
    spec = net.spec
    return NetworkAttachment(network=name, driver=spec.driver, ip=opts.ip or "",
                             aliases=tuple(opts.aliases), internal=spec.internal,
                             options=dict(spec.options), mtu=spec.mtu or 0)


def intents(
    service: ServiceDocument, networks: Mapping[str, NetworkDocument]
) -> tuple[NetworkAttachment, ...]:
    """The attachments one replica of ``service`` asks for, before IPAM fills addresses.

    A network missing from ``networks`` (deleted under a running service) is skipped;
    Apply refuses to create that situation.
    """
    spec = service.spec
    if spec.network_mode is not None:
        return ()
    chosen = spec.attachments()
    if not chosen:
        return with_default_route([_IMPLICIT[DEFAULT_NETWORK]])
    out = [intent(name, networks[name], opts) for name, opts in sorted(chosen.items())
           if name in networks]
    if route_candidate(out) is None and any(
            a.driver == "overlay" and not a.internal for a in out):
        out.append(_IMPLICIT[GATEWAY_NETWORK])
    return with_default_route(out)


def route_candidate(atts: list[NetworkAttachment]) -> NetworkAttachment | None:
    """The attachment that should carry the default route, by the rules above."""
    ordered = sorted(atts, key=lambda a: a.network)
    gateway = [a for a in ordered if a.network == GATEWAY_NETWORK]
    routed = [a for a in ordered if a.driver in ROUTED_DRIVERS and not a.internal
              and a.network != GATEWAY_NETWORK]
    return routed[0] if routed else gateway[0] if gateway else None


def with_default_route(atts: list[NetworkAttachment]) -> tuple[NetworkAttachment, ...]:
    route = route_candidate(atts)
    return tuple(sorted(
        (a.model_copy(update={"default_route": a is route}) for a in atts),
        key=lambda a: a.network))


def ports_problem(
    service: ServiceDocument, networks: Mapping[str, NetworkDocument]
) -> str | None:
    """Why ``service``'s published ports cannot land, or None (also when it has none)."""
    if not service.spec.published() or service.spec.network_mode is not None:
        return None     # network_mode with ports is refused by the model
    atts = intents(service, networks)
    route = next((a for a in atts if a.default_route), None)
    if route is None:
        names = ", ".join(a.network for a in atts) or "none"
        return (f"published ports need a network that is not internal to land on, and "
                f"every network of this service is internal ({names}); add a bridge "
                "network, or an overlay, that is not internal")
    if route.driver != "bridge":
        return (f"published ports land on the network that carries the default route, "
                f"and that is {route.driver} network {route.network}; ports are published "
                "on bridge networks only (an overlay's go through the node's gateway "
                "bridge): add a bridge network that sorts before it, or publish nothing")
    return None
