"""The per-network host devices of the bridge driver: the bridge, its address, its ports.

Called by bridge.host (ensure on every resync, teardown) and bridge.driver (ensure before
the first veth, check). Everything reads the kernel before acting and is idempotent, so a
deleted or downed bridge is put back by the next pass.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from netplugins.bridge.config import BridgeConf, port_prefix
from netplugins.contract import mac_from_ip
from netplugins.errors import KernelError
from netplugins.netlink import IFF_UP, kernel, link_index, link_info, tolerate

HAIRPIN = 1


def _kind(info: Any) -> str | None:
    linkinfo = info.get_attr("IFLA_LINKINFO")
    return linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None


def port_hairpin(info: Any) -> bool:
    linkinfo = info.get_attr("IFLA_LINKINFO")
    data = linkinfo.get_attr("IFLA_INFO_SLAVE_DATA") if linkinfo is not None else None
    return data is not None and data.get_attr("IFLA_BRPORT_MODE") == HAIRPIN


async def _addresses(ipr: Any, index: int) -> set[tuple[str, int]]:
    return {
        (m.get_attr("IFA_ADDRESS"), m["prefixlen"])
        async for m in await kernel("dump addresses", ipr.addr("dump"))
        if m["index"] == index
    }


async def ensure_bridge(ipr: Any, conf: BridgeConf) -> list[str]:
    """Create or repair the bridge; return what had to be created or fixed."""
    br, fixed = conf.bridge, []
    info = await link_info(ipr, br)
    if info is not None and _kind(info) != "bridge":
        raise KernelError(f"{br} exists and is not a bridge", errno=errno.EEXIST)
    if info is None:
        # A fixed MAC: a bridge otherwise takes its lowest port's MAC, which changes as
        # containers come and go and leaves stale gateway entries in their ARP caches.
        try:
            await ipr.link("add", ifname=br, kind="bridge", address=mac_from_ip(
                str(conf.gateway)))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # the host's resync and an ADD may race
                raise KernelError(f"create {br}: {os.strerror(exc.code)}",
                                  errno=exc.code) from exc
        fixed.append(br)
        info = await link_info(ipr, br)
        if info is None:
            raise KernelError(f"{br} vanished right after it was created", errno=errno.ENODEV)
    index = info["index"]
    if not info["flags"] & IFF_UP or info.get_attr("IFLA_MTU") != conf.mtu:
        # An explicit MTU also stops the bridge from following its ports' MTU.
        await kernel(f"set {br} up", ipr.link("set", index=index, mtu=conf.mtu, state="up"))
        if br not in fixed:
            fixed.append(f"{br} up/mtu")
    gateway = (str(conf.gateway), conf.subnet.prefixlen)
    if gateway not in await _addresses(ipr, index):
        try:
            await ipr.addr("add", index=index, address=gateway[0], prefixlen=gateway[1])
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise KernelError(f"address {conf.gateway_cidr} on {br}: "
                                  f"{os.strerror(exc.code)}", errno=exc.code) from exc
        fixed.append(f"{br} address {conf.gateway_cidr}")
    return fixed + await _reattach_ports(ipr, conf, index)


async def _reattach_ports(ipr: Any, conf: BridgeConf, br_index: int) -> list[str]:
    """Put the network's host veths back on a recreated bridge, hairpin on again."""
    prefix, moved = port_prefix(conf.network), []
    async for link in await kernel("dump links", ipr.link("dump")):
        name = link.get_attr("IFLA_IFNAME")
        if name.startswith(prefix) and link.get_attr("IFLA_MASTER") != br_index:
            await kernel(f"attach {name} to {conf.bridge}", ipr.link(
                "set", index=link["index"], master=br_index, state="up"))
            await kernel(f"hairpin on {name}", ipr.brport("set", index=link["index"],
                                                          mode=HAIRPIN))
            moved.append(name)
    return moved


async def check_bridge(ipr: Any, conf: BridgeConf) -> list[str]:
    """Every way the bridge differs from what ensure_bridge makes."""
    br = conf.bridge
    info = await link_info(ipr, br)
    if info is None:
        return [f"bridge {br} is missing"]
    if _kind(info) != "bridge":
        return [f"{br} is not a bridge"]
    problems = []
    if not info["flags"] & IFF_UP:
        problems.append(f"bridge {br} is down")
    if info.get_attr("IFLA_MTU") != conf.mtu:
        problems.append(f"bridge {br} has MTU {info.get_attr('IFLA_MTU')}, want {conf.mtu}")
    if (str(conf.gateway), conf.subnet.prefixlen) not in await _addresses(ipr, info["index"]):
        problems.append(f"bridge {br} lacks its gateway address {conf.gateway_cidr}")
    return problems


async def remove_bridge(ipr: Any, conf: BridgeConf) -> list[str]:
    """Delete the bridge and any host veth of the network still around; gone is fine."""
    prefix, removed = port_prefix(conf.network), []
    ports = [link.get_attr("IFLA_IFNAME")
             async for link in await kernel("dump links", ipr.link("dump"))]
    for name in [*sorted(n for n in ports if n.startswith(prefix)), conf.bridge]:
        if await kernel(f"delete {name}", tolerate(ipr.link("del", ifname=name), errno.ENODEV)):
            removed.append(name)
    return removed


async def link_exists(ipr: Any, name: str) -> bool:
    return await link_index(ipr, name) is not None
