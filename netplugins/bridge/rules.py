"""The firewall rules of a bridge network and of a container's published ports. Pure: the
driver and host hand these Rulesets to netplugins.firewall; unit tests read them.

Why each rule is there is in the design notes of netplugins/bridge/host.py.
"""

from __future__ import annotations

from netplugins.bridge.config import (
    DEFAULT_BRIDGE,
    BridgeConf,
    container_owner,
    port_prefix,
)
from netplugins.contract import Attachment, PortMap
from netplugins.firewall import Base, Chain, Ruleset

LOOPBACK = "127.0.0.0/8"
ALL_BRIDGES = f'{{ "{DEFAULT_BRIDGE}", "bb-*" }}'


def _forward(conf: BridgeConf) -> Chain:
    br = f'"{conf.bridge}"'
    rules = []
    if conf.icc:
        rules.append(f"iifname {br} oifname {br} return")
    else:
        rules += [f"iifname {br} oifname {br} ct status dnat return",
                  f"iifname {br} oifname {br} drop"]
    if conf.internal:
        rules += [f"iifname {br} drop", f"oifname {br} drop"]
    else:
        rules += [
            "ct status dnat return",
            f"iifname {br} oifname {ALL_BRIDGES} drop",
            f"oifname {br} ct state established,related return",
            f"oifname {br} drop",
        ]
    return Chain(Base.FILTER_FWD, tuple(rules))


def network_ruleset(conf: BridgeConf) -> Ruleset:
    """Everything the network itself needs on this host (owner: the bridge's name)."""
    br = f'"{conf.bridge}"'
    chains = [
        # route_localnet (set on the bridge for published 127.0.0.1 ports) would otherwise
        # let a container reach the host's loopback services, or spoof loopback sources.
        Chain(Base.RAW_PRE, (f"iifname {br} ip saddr {LOOPBACK} drop",
                             f"iifname {br} ip daddr {LOOPBACK} drop")),
        _forward(conf),
    ]
    if not conf.internal:
        chains.append(Chain(Base.NAT_POST, (
            f"oifname != {br} ip saddr {conf.subnet} masquerade",
            f"oifname {br} ip saddr {conf.subnet} ct status dnat masquerade",
            f"oifname {br} ip saddr {LOOPBACK} masquerade",
        )))
    if not conf.icc:
        chains.append(Chain(Base.BRIDGE_FWD, (
            f'iifname "{port_prefix(conf.network)}*" meta pkttype != host drop',
        )))
    return Ruleset(conf.bridge, tuple(sorted(chains, key=lambda c: c.base.value)),
                   accept_ifaces=(conf.bridge,))


def _dnat(port: PortMap, ip: str, *, from_outside: bool) -> str | None:
    proto = port.protocol
    target = f"{proto} dport {port.host_port} dnat to {ip}:{port.container_port}"
    if port.host_ip in ("", "0.0.0.0"):
        # From outside, a packet addressed to 127.0.0.1 must never be translated: that
        # would expose loopback-only ports to the LAN (kube-proxy's CVE-2020-8558).
        guard = f"ip daddr != {LOOPBACK} " if from_outside else ""
        return f"{guard}fib daddr type local {target}"
    if from_outside and port.host_ip.startswith("127."):
        return None
    return f"ip daddr {port.host_ip} {target}"


def container_ruleset(conf: BridgeConf, att: Attachment) -> Ruleset:
    """The attachment's published ports (owner: ``c-`` + its veth's hash); may be empty."""
    pre = tuple(r for p in att.ports if (r := _dnat(p, att.ip, from_outside=True)))
    out = tuple(r for p in att.ports if (r := _dnat(p, att.ip, from_outside=False)))
    chains = [Chain(base, rules) for base, rules in ((Base.NAT_PRE, pre), (Base.NAT_OUT, out))
              if rules]
    return Ruleset(container_owner(conf.network, att), tuple(chains))
