"""MacvlanDriver: the CNI verbs of ``driver: macvlan`` for one container interface.

The agent calls add/check/delete (see netplugins.contract); the design notes are in
macvlan.host. ADD makes a macvlan on the network's parent (creating a VLAN sub-interface
first when the parent is one berth may create) directly inside the container's netns, so no
half-made device is ever left in the host's namespace. It is made under a temporary name
and renamed inside the container: older kernels (Debian 12's 6.1; not 6.18) look the name of
a new link up in the caller's namespace even when it is created in another, so making
``eth0`` from a host whose own NIC is ``eth0`` fails there with "File exists" (found by
tests/vm/test_vlan.py on Debian's kernel). DEL needs only
the netns and the interface name, like CNI's macvlan cmdDel: the device lives in the
container's namespace and dies with it.
"""

from __future__ import annotations

import errno
import logging
import secrets
from contextlib import AsyncExitStack
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from netplugins.contract import (
    Attachment,
    AttachResult,
    HostContext,
    Interface,
    IPConfig,
    NetConf,
    Route,
    mac_from_ip,
)
from netplugins.errors import (
    AttachConflictError,
    CheckFailedError,
    KernelError,
    NetnsNotFoundError,
    NetworkConfigError,
)
from netplugins.macvlan.config import MacvlanConf, macvlan_mtu, parse
from netplugins.macvlan.parent import (
    ensure_anchor,
    ensure_parent,
    parent_lock,
    unusable,
)
from netplugins.netlink import kernel, link_index, link_info, netns_path, route_socket
from netplugins.sandbox import (
    DEFAULT_DST,
    address_problems,
    configure,
    link_problems,
    remove_link,
)

log = logging.getLogger(__name__)



def refuse(att: Attachment, net: NetConf) -> MacvlanConf:
    """Everything ADD can refuse before it touches the kernel."""
    conf = parse(net)
    if att.ports:
        first = att.ports[0]
        raise NetworkConfigError(
            f"macvlan network {net.name}: {att.container_name} publishes port "
            f"{first.host_port}/{first.protocol}, and macvlan does not publish ports: the "
            "container has its own address on the LAN; publish through a bridge network"
        )
    if att.default_route and not att.gateway:
        raise NetworkConfigError(
            f"macvlan network {net.name}: {att.container_name} is to take its default route "
            "here, but the network has no gateway"
        )
    return conf


def _kind_and_mode(info: Any) -> tuple[str, str]:
    linkinfo = info.get_attr("IFLA_LINKINFO")
    if linkinfo is None:
        return "", ""
    data = linkinfo.get_attr("IFLA_INFO_DATA")
    mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None else ""
    return str(linkinfo.get_attr("IFLA_INFO_KIND") or ""), str(mode or "")


class MacvlanDriver:
    """CNI-style driver for ``driver: macvlan`` networks.

    ``ctx.host_netns`` is None when the caller runs inside the host's netns (the agent);
    tests pass the simulated host's netns.
    """

    def __init__(self, ctx: HostContext) -> None:
        self._ctx = ctx

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        conf = refuse(att, net)
        sandbox = netns_path(att.netns)
        async with route_socket(att.netns) as cns, route_socket(self._ctx.host_netns) as ipr:
            if await link_index(cns, att.ifname) is not None:
                raise AttachConflictError(f"{att.container_name}: {att.ifname} already exists")
            async with AsyncExitStack() as undo:
                async with parent_lock(self._ctx.host_netns, conf.parent):
                    parent = await ensure_parent(ipr, conf)
                    await ensure_anchor(ipr, conf, parent)
                    mtu = macvlan_mtu(net, conf.parent, parent.mtu)
                    temporary = await self._create(ipr, conf, att, parent.index, mtu, sandbox)
                undo.push_async_callback(self._remove, cns, temporary)
                await self._rename(cns, temporary, att)
                undo.push_async_callback(self._remove, cns, att.ifname)
                mac = await self._configure(cns, att)
                undo.pop_all()
        routes = (Route(DEFAULT_DST, att.gateway),) if att.default_route else ()
        return AttachResult(
            interfaces=(Interface(att.ifname, mac, sandbox),),
            ips=(IPConfig(att.cidr, interface=0, gateway=att.gateway),),
            routes=routes,
            mtu=mtu,
        )

    @staticmethod
    async def _create(
        ipr: Any, conf: MacvlanConf, att: Attachment, parent: int, mtu: int, sandbox: str
    ) -> str:
        """The macvlan, in the container under a temporary name (see the module docstring),
        which it returns."""
        # In passthru mode a macvlan's MAC is its parent's, and setting one would rewrite the
        # parent's (the host NIC's) MAC; the kernel's own choice is kept and reported.
        mac = {} if conf.passthru else {"address": att.mac or mac_from_ip(att.ip)}
        temporary = "mvt" + secrets.token_hex(6)
        try:
            await ipr.link("add", ifname=temporary, kind="macvlan", link=parent,
                           macvlan_mode=conf.mode, mtu=mtu, net_ns_fd=sandbox, **mac)
        except NetlinkError as exc:
            raise unusable(conf, exc) from exc
        return temporary

    @staticmethod
    async def _rename(cns: Any, temporary: str, att: Attachment) -> None:
        index = await link_index(cns, temporary)
        if index is None:
            raise KernelError(f"{temporary} vanished right after it was created",
                              errno=errno.ENODEV)
        try:
            await kernel(f"rename {temporary} to {att.ifname}",
                         cns.link("set", index=index, ifname=att.ifname))
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                raise AttachConflictError(
                    f"{att.container_name}: {att.ifname} already exists") from exc
            raise

    @staticmethod
    async def _configure(cns: Any, att: Attachment) -> str:
        """Address, up, lo up, default route; returns the interface's MAC."""
        await configure(cns, att)
        info = await link_info(cns, att.ifname)
        return str(info.get_attr("IFLA_ADDRESS")) if info is not None else ""

    @staticmethod
    async def _remove(cns: Any, ifname: str) -> None:
        await remove_link(cns, ifname)

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        conf = parse(net)
        problems: list[str] = []
        async with route_socket(self._ctx.host_netns) as ipr:
            parent = await link_info(ipr, conf.parent)
        if parent is None:
            problems.append(f"parent {conf.parent} is missing")
        try:
            problems += await self._check_container(att, conf, prev, parent)
        except NetnsNotFoundError as exc:
            problems.append(str(exc))
        if problems:
            raise CheckFailedError(f"macvlan {net.name}: {att.container_name}", problems)

    async def _check_container(
        self, att: Attachment, conf: MacvlanConf, prev: AttachResult, parent: Any
    ) -> list[str]:
        async with route_socket(att.netns) as cns:
            info = await link_info(cns, att.ifname)
            if info is None:
                return [f"{att.ifname} is missing in the container"]
            where = f"container {att.ifname}"
            problems = _link_problems(info, where, conf, prev, parent)
            problems += await address_problems(cns, info, att, where)
            return problems

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        if not att.netns:
            return                     # no namespace recorded: the device died with it
        try:
            async with route_socket(att.netns) as cns:
                info = await link_info(cns, att.ifname)
                if info is None:
                    return
                kind, _ = _kind_and_mode(info)
                if kind != "macvlan":
                    log.warning("macvlan %s: %s in %s is a %s device, not ours; left alone",
                                net.name, att.ifname, att.netns, kind or "plain")
                    return
                await self._remove(cns, att.ifname)
        except NetnsNotFoundError:
            return                     # the container's namespace, and the device, are gone


def _link_problems(
    info: Any, where: str, conf: MacvlanConf, prev: AttachResult, parent: Any
) -> list[str]:
    problems = []
    kind, mode = _kind_and_mode(info)
    if kind != "macvlan":
        return [f"{where} is a {kind or 'plain'} device, not a macvlan"]
    if mode != conf.mode:
        problems.append(f"{where} is in {mode} mode, want {conf.mode}")
    if parent is not None and info.get_attr("IFLA_LINK") != parent["index"]:
        problems.append(f"{where} is not on parent {conf.parent}")
    problems += link_problems(info, where, prev.mtu)
    inside = next((i for i in prev.interfaces if i.sandbox), None)
    if inside is not None and inside.mac and info.get_attr("IFLA_ADDRESS") != inside.mac:
        problems.append(f"{where} has MAC {info.get_attr('IFLA_ADDRESS')}, want {inside.mac}")
    return problems

