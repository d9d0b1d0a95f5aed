"""OverlayDriver: the CNI verbs of the VXLAN overlay for one container interface.

The agent calls add/check/delete (see netplugins.contract); host-wide state lives in
overlay.host.OverlayHost, whose module docstring has the design notes. ADD puts a veth
pair between the container's netns and the network's bridge ``bo-<vni>``; it creates the
bridge and VXLAN device itself if the host has none yet (idempotently, the same code the
host's sync runs), so the order of ``OverlayHost.ensure()`` and the first ADD is not fragile.

No default route is installed: the bridge has no address, so the overlay gateway is not
reachable from a container, and egress to the outside is not this driver's job.
"""

from __future__ import annotations

import errno
import hashlib
import logging
from contextlib import AsyncExitStack

from netplugins.contract import (
    Attachment,
    AttachResult,
    HostContext,
    Interface,
    IPConfig,
    NetConf,
    mac_from_ip,
)
from netplugins.errors import AttachConflictError, CheckFailedError, NetnsNotFoundError
from netplugins.netlink import (
    kernel,
    link_index,
    link_info,
    netns_path,
    route_socket,
    tolerate,
)
from netplugins.overlay.devices import (
    bridge_name,
    check_devices,
    ensure_devices,
    overlay_mtu,
    port_alias,
)
from netplugins.sandbox import address_problems, configure, link_problems, remove_link

log = logging.getLogger(__name__)


def host_veth_name(att: Attachment) -> str:
    """A stable host-side name, so DEL finds the veth even without the stored result."""
    digest = hashlib.sha256(f"{att.container_id}/{att.ifname}".encode()).hexdigest()
    return "vo" + digest[:11]


class OverlayDriver:
    """CNI-style driver for ``driver: overlay`` networks.

    ``ctx.host_netns`` is None when the caller runs inside the host's netns (the agent);
    tests pass the simulated host's netns.
    """

    def __init__(self, ctx: HostContext) -> None:
        self._ctx = ctx

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        mtu = overlay_mtu(net, self._ctx.underlay)
        mac = att.mac or mac_from_ip(att.ip)
        host_if = host_veth_name(att)
        sandbox = netns_path(att.netns)
        async with route_socket(att.netns) as cns, route_socket(self._ctx.host_netns) as ipr:
            if await link_index(cns, att.ifname) is not None:
                raise AttachConflictError(f"{att.container_name}: {att.ifname} already exists")
            await ensure_devices(ipr, net, self._ctx.underlay)
            br_index = await link_index(ipr, bridge_name(net.vni))
            if await tolerate(ipr.link("del", ifname=host_if), errno.ENODEV):
                log.info("overlay %s: removed leftover %s", net.name, host_if)
            async with AsyncExitStack() as undo:
                await kernel(f"create veth {host_if}", ipr.link(
                    "add", ifname=host_if, kind="veth", mtu=mtu,
                    peer={"ifname": att.ifname, "net_ns_fd": sandbox, "address": mac, "mtu": mtu},
                ))
                # Deleting the host end takes the container end with it.
                undo.push_async_callback(remove_link, ipr, host_if)
                await kernel(f"attach {host_if} to bridge", ipr.link(
                    "set", ifname=host_if, master=br_index, state="up",
                    ifalias=port_alias(net.vni)))
                await configure(cns, att)
                host_info = await link_info(ipr, host_if)
                host_mac = host_info.get_attr("IFLA_ADDRESS") if host_info else ""
                undo.pop_all()
        return AttachResult(
            interfaces=(Interface(host_if, host_mac), Interface(att.ifname, mac, sandbox)),
            ips=(IPConfig(att.cidr, interface=1, gateway=att.gateway),),
            bridge=bridge_name(net.vni),
            mtu=mtu,
        )

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        what = f"overlay {net.name}: {att.container_name}"
        mtu = overlay_mtu(net, self._ctx.underlay)
        host = prev.host_interface()
        host_if = host.name if host else host_veth_name(att)
        async with route_socket(self._ctx.host_netns) as ipr:
            problems = await check_devices(ipr, net, self._ctx.underlay)
            br_index = await link_index(ipr, bridge_name(net.vni))
            info = await link_info(ipr, host_if)
            if info is None:
                problems.append(f"host veth {host_if} is missing")
            else:
                if br_index is not None and info.get_attr("IFLA_MASTER") != br_index:
                    problems.append(f"host veth {host_if} is not a port of {bridge_name(net.vni)}")
                problems += link_problems(info, f"host veth {host_if}", mtu)
        try:
            problems += await self._check_container(att, mtu)
        except NetnsNotFoundError as exc:
            problems.append(str(exc))
        if problems:
            raise CheckFailedError(what, problems)

    async def _check_container(self, att: Attachment, mtu: int) -> list[str]:
        async with route_socket(att.netns) as cns:
            info = await link_info(cns, att.ifname)
            if info is None:
                return [f"{att.ifname} is missing in the container"]
            where = f"container {att.ifname}"
            return link_problems(info, where, mtu) + await address_problems(
                cns, info, att, where, mac=att.mac or mac_from_ip(att.ip))

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        host = prev.host_interface() if prev else None
        names = {host.name if host else host_veth_name(att), host_veth_name(att)}
        async with route_socket(self._ctx.host_netns) as ipr:
            for name in sorted(names):
                await remove_link(ipr, name)

