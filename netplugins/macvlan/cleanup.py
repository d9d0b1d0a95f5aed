"""Removing macvlan host state of networks this node no longer has, from kernel facts.

The agent calls ``remove_stale_networks(ctx, keep)`` at start with the networks its
containers still use (through the driver table's ``cleanup``): a network deleted while the
agent was down never got its ``MacvlanHost.teardown()``, so its reference device stayed
on the parent, and a sub-interface berth created would never be removed. Reference
devices are found by their alias (``berth:macvlan-ref <network>``); a parent goes only
under the rule teardown applies: berth made it and nothing else uses it.
"""

from __future__ import annotations

from collections.abc import Iterable

from netplugins.contract import HostContext
from netplugins.macvlan.config import MacvlanConf, anchor_alias
from netplugins.macvlan.parent import parent_lock, release_parent
from netplugins.netlink import kernel, route_socket

_REF = anchor_alias("")


async def remove_stale_networks(ctx: HostContext, keep: Iterable[str]) -> list[str]:
    """Release every macvlan network's host state whose name is not in ``keep``; returns
    the devices deleted."""
    wanted = set(keep)
    stale: list[tuple[str, str]] = []            # (network, parent name)
    async with route_socket(ctx.host_netns) as ipr:
        links = [link async for link in await kernel("dump links", ipr.link("dump"))]
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        for link in links:
            alias = str(link.get_attr("IFLA_IFALIAS") or "")
            network = alias.removeprefix(_REF)
            if alias.startswith(_REF) and network not in wanted:
                parent = names.get(link.get_attr("IFLA_LINK"))
                if parent:
                    stale.append((network, str(parent)))
    deleted: list[str] = []
    for network, parent in sorted(stale):
        conf = MacvlanConf(network=network, parent=parent, mode="bridge", vlan=None)
        async with route_socket(ctx.host_netns) as ipr, parent_lock(ctx.host_netns, parent):
            deleted += await release_parent(ipr, conf)
    return deleted
