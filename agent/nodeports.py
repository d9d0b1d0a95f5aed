"""Which of this node's ports the agent closes to containers, from its own configuration.

Called by agent.main at start; the rules and why are netplugins.firewall.nodeports'. The
fixed defaults (etcd 2379/2380, controller 7700/9101, agent 7071/9102) are always closed;
to them come the ports this agent was told to use: its listen and metrics ports, and the
ports of its etcd endpoints and its controller (where those run on this node, that is
where they listen).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from agent.config import AgentConfig
from netplugins.firewall import NodePorts


def port_of(address: str) -> int | None:
    """The port of ``HOST:PORT``, ``[V6]:PORT`` or ``scheme://HOST:PORT``; None if none."""
    address = address.strip()
    if not address:
        return None
    try:
        port = urlsplit(address if "://" in address else f"//{address}").port
    except ValueError:
        return None
    return port if port else None


def configured_ports(addresses: Iterable[str]) -> list[int]:
    found = (port_of(a) for addr in addresses for a in addr.split(","))
    return sorted({p for p in found if p is not None})


def node_ports(cfg: AgentConfig) -> NodePorts:
    return NodePorts.with_tcp(configured_ports(
        (cfg.listen, cfg.metrics_listen, cfg.controller, cfg.etcd.endpoint)))
