"""Removing bridge networks this node no longer has, found from kernel facts alone.

The agent calls ``remove_stale_networks(ctx, keep)`` after a restart, with the names of
the bridge-driver networks it still has work for: a network deleted while the agent was
down never got its ``BridgeHost.teardown()``, and its bridge, veths and rules would stay.
Everything is recognised by name (config.py): berth's bridges are ``berth0`` and
``bb-<10 hex>``, which are also the network owners in the firewall, and a network's
veths and container owners share the first 6 of those hex digits.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from berth.manifest_model import DEFAULT_NETWORK
from netplugins.bridge.config import (
    CONTAINER_OWNER_PREFIX,
    DEFAULT_BRIDGE,
    VETH_PREFIX,
    bridge_name,
    port_prefix,
)
from netplugins.contract import HostContext
from netplugins.netlink import kernel, route_socket, tolerate


def is_bridge_name(name: str) -> bool:
    rest = name[3:]
    return name == DEFAULT_BRIDGE or (
        name.startswith("bb-") and len(rest) == 10
        and all(c in "0123456789abcdef" for c in rest))


def ports_of(bridge: str) -> str:
    """The veth prefix of the network whose bridge is ``bridge``."""
    if bridge == DEFAULT_BRIDGE:
        return port_prefix(DEFAULT_NETWORK)
    return VETH_PREFIX + bridge[3:9]


async def dead(owner: str) -> bool:
    """For Firewall.prune: every owner it is asked about is to go."""
    return False


async def remove_stale_networks(ctx: HostContext, keep: Iterable[str]) -> list[str]:
    """Remove every berth bridge network not named in ``keep``; return its bridge names."""
    wanted = {bridge_name(n) for n in keep}
    fw = ctx.firewall
    async with route_socket(ctx.host_netns) as ipr:
        links = [link.get_attr("IFLA_IFNAME")
                 async for link in await kernel("dump links", ipr.link("dump"))]
        stale = sorted(({n for n in links if is_bridge_name(n)}
                        | {o for o in await fw.owners() if is_bridge_name(o)}) - wanted)
        for bridge in stale:
            await fw.remove(bridge)
            prefix = ports_of(bridge)
            await fw.prune(CONTAINER_OWNER_PREFIX + prefix[len(VETH_PREFIX):], dead)
            for name in [*sorted(n for n in links if n.startswith(prefix)), bridge]:
                await kernel(f"delete {name}",
                             tolerate(ipr.link("del", ifname=name), errno.ENODEV))
    return stale
