"""The container's side of an attachment, the same for every driver: configure it after
ADD made the interface, and say what differs from the attachment for CHECK.

Called by the driver packages (netplugins/<driver>/driver.py), inside a route socket
already opened in the container's netns (netlink.route_socket(att.netns)).
"""

from __future__ import annotations

import errno
from typing import Any

from netplugins.contract import Attachment
from netplugins.errors import NetnsNotFoundError
from netplugins.netlink import IFF_UP, kernel, link_index, tolerate

DEFAULT_DST = "0.0.0.0/0"
MAIN_TABLE = 254


async def configure(cns: Any, att: Attachment) -> int:
    """Address the interface, bring it and lo up, and add the default route via the
    attachment's gateway when it carries one; returns the interface's index."""
    index = await link_index(cns, att.ifname)
    if index is None:
        raise NetnsNotFoundError(f"{att.ifname} vanished from {att.netns} after ADD made it")
    await kernel(f"address {att.cidr} on {att.ifname}", cns.addr(
        "add", index=index, address=att.ip, prefixlen=att.prefixlen))
    await kernel(f"set {att.ifname} up", cns.link("set", index=index, state="up"))
    lo = await link_index(cns, "lo")
    await kernel("set lo up", cns.link("set", index=lo, state="up"))
    if att.default_route:
        await kernel(f"default route via {att.gateway}", cns.route(
            "add", dst=DEFAULT_DST, gateway=att.gateway, oif=index))
    return index


def link_problems(info: Any, where: str, mtu: int) -> list[str]:
    """A link that is down, or whose MTU is not ``mtu`` (0: any MTU)."""
    problems = []
    if not info["flags"] & IFF_UP:
        problems.append(f"{where} is down")
    if mtu and info.get_attr("IFLA_MTU") != mtu:
        problems.append(f"{where} has MTU {info.get_attr('IFLA_MTU')}, want {mtu}")
    return problems


async def address_problems(cns: Any, info: Any, att: Attachment, where: str,
                           mac: str | None = None) -> list[str]:
    """What the interface ``info`` lacks of ``att``: its MAC (when ``mac`` is given), its
    address, and the default route when the attachment carries it."""
    problems = []
    if mac is not None and info.get_attr("IFLA_ADDRESS") != mac:
        problems.append(f"{where} has MAC {info.get_attr('IFLA_ADDRESS')}, want {mac}")
    addrs = {
        (m.get_attr("IFA_ADDRESS"), m["prefixlen"])
        async for m in await kernel("dump addresses", cns.addr("dump"))
        if m["index"] == info["index"]
    }
    if (att.ip, att.prefixlen) not in addrs:
        problems.append(f"{where} lacks address {att.cidr}")
    if att.default_route and not await _has_default_route(cns, info["index"], att.gateway):
        problems.append(f"{where} has no default route via {att.gateway}")
    return problems


async def _has_default_route(cns: Any, index: int, gateway: str) -> bool:
    async for route in await kernel("dump routes", cns.route("dump", family=2)):
        if (route["dst_len"] == 0 and route["table"] == MAIN_TABLE
                and route.get_attr("RTA_OIF") == index
                and route.get_attr("RTA_GATEWAY") == gateway):
            return True
    return False


async def remove_link(ipr: Any, name: str) -> None:
    """Delete the link ``name``; already gone is fine (DEL tolerates it)."""
    await kernel(f"delete {name}", tolerate(ipr.link("del", ifname=name), errno.ENODEV))
