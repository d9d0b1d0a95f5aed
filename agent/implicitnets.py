"""The gateway CIDRs of the node's two implicit networks: ``bridge`` and ``berth-gwbridge``.

``bridge`` (berth.manifest_model.DEFAULT_NETWORK, Docker's docker0) takes its subnet from
the agent's ``bip``; ``berth-gwbridge`` (GATEWAY_NETWORK, Docker's docker_gwbridge) from
``gwbridge-bip``. Both are gateway CIDRs, the bridge's own address with the prefix length
("172.17.0.1/16"), as Docker's ``bip``. agent.config parses them (``parse_gateway``);
agent.main calls ``choose`` once at start with the node's addresses and routes and
announces the result in NodeRecord.bip / NodeRecord.gwbridge, from which the controller
allocates the containers' addresses on this node.

Design notes:
- Defaults follow Docker's address pools: the first of 172.17.0.0/16 ... 172.31.0.0/16,
  then 192.168.0.0/20, 192.168.16.0/20 ... 192.168.240.0/20, that overlaps none of the
  node's addresses and routes and not the other implicit network.
- A configured value that overlaps a node address or route is refused at start: a
  bridge on it would hijack traffic for the node's own LAN.
- The bridge driver puts the gateway address on a bridge and the kernel adds its
  connected route; after an agent restart both are "node addresses" like any other.
  So the agent remembers what it chose last (``<state>/implicit-networks.json``), and
  an address or route that is exactly one of those is its own, not a collision (nor is it
  announced among the node's prefixes). Without that, a restart would move ``bridge``
  to the next candidate under running containers.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from berth.errors import UserError
from berth.records import HostPrefix

log = logging.getLogger(__name__)

STATE_FILE = "implicit-networks.json"
MIN_PREFIX, MAX_PREFIX = 8, 30

CANDIDATES: tuple[ipaddress.IPv4Network, ...] = (
    *(ipaddress.IPv4Network(f"172.{b}.0.0/16") for b in range(17, 32)),
    *ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20),
)

# What a subnet collides with on this node, in words (NodeRecord.overlap), or None.
Collides = Callable[[ipaddress.IPv4Network], str | None]


@dataclass(frozen=True)
class GatewaySetting:
    """A configured gateway CIDR and where it came from (for the one-line refusal)."""

    cidr: ipaddress.IPv4Interface
    source: str                # "--bip", "/etc/berth/daemon.json: bip"


@dataclass(frozen=True)
class ImplicitNets:
    """The chosen gateway CIDRs, as NodeRecord announces them."""

    bip: str                   # "172.17.0.1/16"
    gwbridge: str

    def networks(self) -> tuple[ipaddress.IPv4Network, ...]:
        return tuple(ipaddress.IPv4Interface(c).network for c in (self.bip, self.gwbridge))


def parse_gateway(text: str, source: str) -> GatewaySetting:
    """``172.17.0.1/16``: an IPv4 host address with its prefix length; one line if not."""
    if "/" not in text:
        raise UserError(f"{source} {text!r}: expected the bridge's address with a prefix "
                        f"length, e.g. 172.17.0.1/16")
    try:
        cidr = ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise UserError(f"{source} {text!r}: not an IPv4 address with a prefix length "
                        f"(e.g. 172.17.0.1/16)") from exc
    net = cidr.network
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise UserError(f"{source} {text!r}: the prefix length must be between "
                        f"{MIN_PREFIX} and {MAX_PREFIX}")
    if cidr.ip in (net.network_address, net.broadcast_address):
        raise UserError(f"{source} {text!r}: {cidr.ip} is the subnet's "
                        f"{'network' if cidr.ip == net.network_address else 'broadcast'} "
                        f"address; give the bridge's own address, e.g. "
                        f"{net.network_address + 1}/{net.prefixlen}")
    return GatewaySetting(cidr, source)


def _gateway_of(net: ipaddress.IPv4Network) -> str:
    return f"{net.network_address + 1}/{net.prefixlen}"


def _pick(what: str, flag: str, collides: Collides,
          taken: Iterable[ipaddress.IPv4Network]) -> str:
    busy = list(taken)
    for net in CANDIDATES:
        if collides(net) is None and not any(net.overlaps(t) for t in busy):
            return _gateway_of(net)
    raise UserError(f"no free subnet for {what}: every default candidate "
                    f"({CANDIDATES[0]} ... {CANDIDATES[-1]}) overlaps this node's addresses "
                    f"or routes; set {flag}")


def _checked(setting: GatewaySetting, collides: Collides) -> str:
    problem = collides(setting.cidr.network)
    if problem is not None:
        raise UserError(f"{setting.source} {setting.cidr}: overlaps {problem}")
    return str(setting.cidr)


def choose(bip: GatewaySetting | None, gwbridge: GatewaySetting | None,
           collides: Collides) -> ImplicitNets:
    """Configured values checked against the node, defaults picked around them."""
    if bip and gwbridge and bip.cidr.network.overlaps(gwbridge.cidr.network):
        raise UserError(f"{gwbridge.source} {gwbridge.cidr}: overlaps {bip.source} {bip.cidr}")
    chosen_bip = _checked(bip, collides) if bip else None
    chosen_gw = _checked(gwbridge, collides) if gwbridge else None
    if chosen_bip is None:
        taken = [gwbridge.cidr.network] if gwbridge else []
        chosen_bip = _pick("the default network (bridge)", "--bip", collides, taken)
    if chosen_gw is None:
        taken = [ipaddress.IPv4Interface(chosen_bip).network]
        chosen_gw = _pick("the gateway bridge (berth-gwbridge)", "--gwbridge-bip", collides,
                          taken)
    return ImplicitNets(chosen_bip, chosen_gw)


def without_own(prefixes: tuple[HostPrefix, ...],
                own: ImplicitNets | None) -> tuple[HostPrefix, ...]:
    """``prefixes`` minus the implicit bridges' own address and connected route."""
    if own is None:
        return prefixes
    mine = {own.bip, own.gwbridge, *(str(n) for n in own.networks())}
    return tuple(p for p in prefixes if p.cidr not in mine)


def load_previous(state_dir: Path) -> ImplicitNets | None:
    """What the last agent on this state dir chose; None if nothing (valid) is there."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        found = ImplicitNets(str(data["bip"]), str(data["gwbridge"]))
        found.networks()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found


def save(state_dir: Path, nets: ImplicitNets) -> None:
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"bip": nets.bip, "gwbridge": nets.gwbridge}))
    os.replace(tmp, path)
