"""Small pyroute2 helpers every driver shares: open a route socket in a netns, look up links,
translate netlink failures into netplugins errors, and discover the underlay.

Called by the driver packages (netplugins/<driver>/) only. A socket for another namespace
is created by berth.netns on a thread of its own that enters the namespace and comes back,
then handed to ``AsyncIPRoute(fileno=...)``. pyroute2's own ``netns=`` would fork a child
for that, and a fork of the agent (which runs gRPC threads) can crash the child.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.netns import NetnsError, netlink_socket
from netplugins.contract import Underlay
from netplugins.errors import KernelError, NetnsNotFoundError

T = TypeVar("T")

NETNS_RUN_DIR = "/run/netns"
IFF_UP = 0x1                   # a link's "up" flag (linux/if.h)


def netns_path(netns: str) -> str:
    """Accept a /run/netns name or any path to a netns file."""
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def _existing_netns(netns: str) -> str:
    # A stat of /proc or /run (tmpfs) does not block on a disk.
    path = netns_path(netns)
    if not os.path.exists(path):
        raise NetnsNotFoundError(f"network namespace {path} does not exist")
    return path


async def _netlink_socket_in(path: str) -> socket.socket:
    try:
        return await netlink_socket(path)
    except NetnsError as exc:
        raise NetnsNotFoundError(str(exc)) from exc


@asynccontextmanager
async def route_socket(netns: str | None = None) -> AsyncIterator[Any]:
    """An AsyncIPRoute in ``netns`` (None: the caller's own namespace)."""
    if netns is None:
        ipr = AsyncIPRoute()
    else:
        sock = await _netlink_socket_in(_existing_netns(netns))
        ipr = AsyncIPRoute(fileno=sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()


async def kernel(what: str, call: Awaitable[T]) -> T:
    """Await a netlink call, turning its failure into a KernelError that says ``what``."""
    try:
        return await call
    except NetlinkError as exc:
        raise KernelError(f"{what}: {os.strerror(exc.code)}", errno=exc.code) from exc
    except OSError as exc:
        raise KernelError(f"{what}: {exc}", errno=exc.errno or 0) from exc


async def tolerate(call: Awaitable[Any], *codes: int) -> bool:
    """Await a netlink call; return False if it failed with one of ``codes`` (e.g. ENODEV on
    a delete that already happened), True if it succeeded. Other failures propagate."""
    try:
        await call
    except NetlinkError as exc:
        if exc.code in codes:
            return False
        raise
    return True


async def link_index(ipr: Any, ifname: str) -> int | None:
    found = await ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


async def link_info(ipr: Any, ifname: str) -> Any | None:
    """The RTM_NEWLINK message for ``ifname``, or None if there is no such link."""
    try:
        msgs = await ipr.link("get", ifname=ifname)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise KernelError(f"read link {ifname}: {os.strerror(exc.code)}", errno=exc.code) from exc
    return msgs[0] if msgs else None


async def discover_underlay(ip: str, netns: str | None = None) -> Underlay:
    """Find the interface that carries ``ip`` (the node's underlay address) and its MTU."""
    async with route_socket(netns) as ipr:
        index = None
        async for msg in await ipr.addr("dump"):
            if msg.get_attr("IFA_ADDRESS") == ip or msg.get_attr("IFA_LOCAL") == ip:
                index = msg["index"]
                break
        if index is None:
            raise KernelError(
                f"no interface has the underlay address {ip}", errno=errno.EADDRNOTAVAIL
            )
        link = (await ipr.link("get", index=index))[0]
        return Underlay(ip=ip, ifname=link.get_attr("IFLA_IFNAME"), mtu=link.get_attr("IFLA_MTU"))
