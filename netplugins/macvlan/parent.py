"""The host side of a macvlan network: its parent, the 802.1q sub-interface berth may
create for it, and the per-network reference devices that say who still uses that.

Called by macvlan.host (ensure on every pass, release on teardown) and macvlan.driver
(ensure under the parent lock before each ADD). The rules, and why they are kernel
objects rather than files, are in macvlan.host's design notes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from netplugins.errors import (
    KernelError,
    ParentMissingError,
    ParentUnusableError,
    VlanUnsupportedError,
)
from netplugins.macvlan.config import (
    VLAN_ALIAS,
    MacvlanConf,
    anchor_alias,
    anchor_name,
    check_vlan_id,
)
from netplugins.netlink import IFF_UP, kernel, link_index, link_info, tolerate

log = logging.getLogger(__name__)

ARPHRD_ETHER = 1
IFF_LOOPBACK = 0x8
RT_SCOPE_LINK = 253

_LOCKS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Lock]
] = weakref.WeakKeyDictionary()


def parent_lock(host_netns: str | None, parent: str) -> asyncio.Lock:
    """One lock per parent per host namespace, shared by every network on it, so that one
    network's teardown never deletes a sub-interface while another's ADD is using it."""
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault((host_netns or "", parent), asyncio.Lock())


@dataclass(frozen=True)
class ParentLink:
    index: int
    mtu: int
    owned: bool                # a sub-interface berth created (it carries VLAN_ALIAS)
    created: tuple[str, ...] = ()


def _alias(info: Any) -> str:
    return str(info.get_attr("IFLA_IFALIAS") or "")


def missing(conf: MacvlanConf) -> ParentMissingError:
    return ParentMissingError(
        f"network {conf.network}: parent interface {conf.parent} does not exist on this node"
    )


async def ensure_parent(ipr: Any, conf: MacvlanConf) -> ParentLink:
    """The parent, creating the VLAN sub-interface a dotted name asks for when it is
    missing. Raises a ParentUnavailableError whose message is the reason to show."""
    created: tuple[str, ...] = ()
    info = await link_info(ipr, conf.parent)
    if info is None:
        await _create_vlan(ipr, conf)
        created = (conf.parent,)
        info = await link_info(ipr, conf.parent)
        if info is None:
            raise KernelError(f"{conf.parent} vanished right after it was created",
                              errno=errno.ENODEV)
    if info["ifi_type"] != ARPHRD_ETHER or info["flags"] & IFF_LOOPBACK:
        raise ParentUnusableError(
            f"network {conf.network}: parent {conf.parent} is not an Ethernet interface"
        )
    owned = _alias(info) == VLAN_ALIAS
    if owned and not info["flags"] & IFF_UP:
        await kernel(f"set {conf.parent} up", ipr.link("set", index=info["index"], state="up"))
    return ParentLink(int(info["index"]), int(info.get_attr("IFLA_MTU")), owned, created)


async def _create_vlan(ipr: Any, conf: MacvlanConf) -> None:
    vlan = conf.vlan
    if vlan is None:
        raise missing(conf)
    check_vlan_id(conf, vlan)
    base = await link_index(ipr, vlan.base)
    if base is None:
        raise ParentMissingError(
            f"network {conf.network}: parent interface {conf.parent} does not exist on this "
            f"node, nor does {vlan.base}, the interface its VLAN {vlan.vid} would go on"
        )
    try:
        await ipr.link("add", ifname=conf.parent, kind="vlan", link=base, vlan_id=vlan.vid)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return          # made meanwhile by someone else: theirs, not marked ours
        if exc.code == errno.EOPNOTSUPP:
            raise VlanUnsupportedError(
                f"network {conf.network}: parent {conf.parent} needs an 802.1q VLAN "
                f"sub-interface (VLAN {vlan.vid} on {vlan.base}), but the kernel has no "
                "802.1q VLAN support (module 8021q)"
            ) from exc
        raise KernelError(f"create VLAN {conf.parent}: {os.strerror(exc.code)}",
                          errno=exc.code) from exc
    try:
        await kernel(f"mark {conf.parent} as berth's", ipr.link(
            "set", ifname=conf.parent, ifalias=VLAN_ALIAS, state="up"))
    except BaseException:
        await tolerate(ipr.link("del", ifname=conf.parent), errno.ENODEV)
        raise
    log.info("macvlan %s: created VLAN %d on %s as %s", conf.network, vlan.vid, vlan.base,
             conf.parent)


def unusable(conf: MacvlanConf, exc: NetlinkError) -> Exception:
    """A clear reason for a macvlan the kernel would not put on the parent."""
    where = f"network {conf.network}"
    if exc.code == errno.EINVAL and conf.passthru:
        return ParentUnusableError(
            f"{where}: passthru mode needs parent {conf.parent} to itself, and it already "
            "carries another macvlan"
        )
    if exc.code == errno.EINVAL:
        return ParentUnusableError(
            f"{where}: parent {conf.parent} is passed through to one macvlan (passthru mode) "
            "and cannot carry another"
        )
    if exc.code == errno.EBUSY:
        return ParentUnusableError(
            f"{where}: parent {conf.parent} is a port of a bridge or bond, which holds it"
        )
    return KernelError(f"macvlan on {conf.parent}: {os.strerror(exc.code)}", errno=exc.code)


async def ensure_anchor(ipr: Any, conf: MacvlanConf, parent: ParentLink) -> bool:
    """Make this network's reference device on an owned parent; True if it was missing.

    It is a macvlan that stays down (it never passes traffic) in private mode. A passthru
    network holds none: the kernel allows a passthru parent exactly one macvlan.
    """
    if not parent.owned or conf.passthru:
        return False
    name = anchor_name(conf.network)
    info = await link_info(ipr, name)
    if info is not None and info.get_attr("IFLA_LINK") == parent.index:
        return False
    if info is not None:
        await tolerate(ipr.link("del", ifname=name), errno.ENODEV)
    try:
        await ipr.link("add", ifname=name, kind="macvlan", link=parent.index,
                       macvlan_mode="private")
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise unusable(conf, exc) from exc
    await kernel(f"label {name}", ipr.link("set", ifname=name,
                                           ifalias=anchor_alias(conf.network)))
    return True


async def users_of(ipr: Any, info: Any) -> list[str]:
    """What still uses a parent in this namespace, in words (empty: nothing)."""
    index = info["index"]
    found = []
    if info.get_attr("IFLA_MASTER"):
        found.append("it is a port of another device")
    async for link in await kernel("dump links", ipr.link("dump")):
        # A link's IFLA_LINK names an index in another namespace when it carries a netnsid
        # (a veth's peer), so only same-namespace links are upper devices of this parent.
        if link.get_attr("IFLA_LINK") == index and link.get_attr("IFLA_LINK_NETNSID") is None:
            found.append(f"{link.get_attr('IFLA_IFNAME')} sits on it")
    async for addr in await kernel("dump addresses", ipr.addr("dump")):
        # The kernel gives every up interface an IPv6 link-local address of its own.
        if addr["index"] == index and addr["scope"] != RT_SCOPE_LINK:
            found.append(f"it has address {addr.get_attr('IFA_ADDRESS')}")
    if not found and await _passed_through(ipr, index):
        found.append("a passthru macvlan holds it")
    return found


async def _passed_through(ipr: Any, index: int) -> bool:
    """True if a passthru macvlan (invisible here: it lives in a container's namespace)
    holds the parent; the kernel then refuses any other macvlan on it."""
    probe = "mvp" + secrets.token_hex(6)
    try:
        await ipr.link("add", ifname=probe, kind="macvlan", link=index, macvlan_mode="private")
    except NetlinkError as exc:
        if exc.code == errno.EINVAL:
            return True
        raise KernelError(f"probe {probe}: {os.strerror(exc.code)}", errno=exc.code) from exc
    await kernel(f"delete {probe}", tolerate(ipr.link("del", ifname=probe), errno.ENODEV))
    return False


async def release_parent(ipr: Any, conf: MacvlanConf) -> list[str]:
    """Drop this network's reference; delete the parent only if berth created it and
    nothing uses it any more. Returns what was deleted."""
    deleted = []
    name = anchor_name(conf.network)
    if await kernel(f"delete {name}", tolerate(ipr.link("del", ifname=name), errno.ENODEV)):
        deleted.append(name)
    info = await link_info(ipr, conf.parent)
    if info is None or _alias(info) != VLAN_ALIAS:
        return deleted
    users = await users_of(ipr, info)
    if users:
        log.info("macvlan %s: keeping %s: %s", conf.network, conf.parent, "; ".join(users))
        return deleted
    if await kernel(f"delete {conf.parent}",
                    tolerate(ipr.link("del", index=info["index"]), errno.ENODEV)):
        deleted.append(conf.parent)
        log.info("macvlan %s: removed %s, which berth created", conf.network, conf.parent)
    return deleted
