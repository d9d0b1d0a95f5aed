"""BridgeDriver: the CNI verbs of the bridge driver for one container interface.

The agent calls add/check/delete (see netplugins.contract); host-wide state lives in
bridge.host.BridgeHost, whose module docstring has the design notes. ADD puts a veth pair
between the container's netns and the network's bridge (creating the bridge if the host
has none yet, with the same idempotent code the host's resync runs), gives the container
its address, ``lo`` and, on the default-route attachment, the default route via the
gateway, then DNATs its published ports. Every step is undone if a later one fails.
DEL, like CNI macvlan's cmdDel, needs no netns: the veth and the port rules are named
from the network and the container id and ifname, and deleting the host end of the veth
takes the container end with it.
"""

from __future__ import annotations

import errno
import logging
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

from netplugins.bridge.config import BridgeConf, container_owner, veth_name
from netplugins.bridge.devices import (
    HAIRPIN,
    check_bridge,
    ensure_bridge,
    port_hairpin,
)
from netplugins.bridge.host import ensure_sysctls, sysctl_problems
from netplugins.bridge.rules import container_ruleset, network_ruleset
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
from netplugins.errors import AttachConflictError, CheckFailedError, NetnsNotFoundError
from netplugins.netlink import kernel, link_index, link_info, netns_path, route_socket, tolerate
from netplugins.sandbox import (
    DEFAULT_DST,
    address_problems,
    configure,
    link_problems,
    remove_link,
)

log = logging.getLogger(__name__)

class BridgeDriver:
    """CNI-style driver for ``driver: bridge`` networks (and the implicit node networks)."""

    def __init__(self, ctx: HostContext) -> None:
        self._ctx = ctx

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        conf = BridgeConf.of(net, self._ctx.underlay)
        conf.check_attachment(att, self._ctx.firewall.node_ports)
        mac = att.mac or mac_from_ip(att.ip)
        host_if, sandbox = veth_name(net.name, att), netns_path(att.netns)
        fw = self._ctx.firewall
        async with route_socket(att.netns) as cns, route_socket(self._ctx.host_netns) as ipr:
            if await link_index(cns, att.ifname) is not None:
                raise AttachConflictError(f"{att.container_name}: {att.ifname} already exists")
            if conf.bridge in await ensure_bridge(ipr, conf):
                await ensure_sysctls(fw, conf)
            br_index = await link_index(ipr, conf.bridge)
            if await tolerate(ipr.link("del", ifname=host_if), errno.ENODEV):
                log.info("bridge %s: removed leftover %s", net.name, host_if)
            async with AsyncExitStack() as undo:
                await kernel(f"create veth {host_if}", ipr.link(
                    "add", ifname=host_if, kind="veth", mtu=conf.mtu,
                    peer={"ifname": att.ifname, "net_ns_fd": sandbox, "address": mac,
                          "mtu": conf.mtu},
                ))
                undo.push_async_callback(remove_link, ipr, host_if)
                index = await link_index(ipr, host_if)
                await kernel(f"attach {host_if} to {conf.bridge}", ipr.link(
                    "set", index=index, master=br_index, state="up"))
                await kernel(f"hairpin on {host_if}", ipr.brport("set", index=index,
                                                                 mode=HAIRPIN))
                await configure(cns, replace(att, gateway=str(conf.gateway)))
                ports = container_ruleset(conf, att)
                if ports.chains:
                    undo.push_async_callback(fw.remove, ports.owner)
                    await fw.apply(ports)
                host_info = await link_info(ipr, host_if)
                host_mac = host_info.get_attr("IFLA_ADDRESS") if host_info else ""
                undo.pop_all()
        routes = (Route(DEFAULT_DST, str(conf.gateway)),) if att.default_route else ()
        return AttachResult(
            interfaces=(Interface(host_if, host_mac), Interface(att.ifname, mac, sandbox)),
            ips=(IPConfig(att.cidr, interface=1, gateway=str(conf.gateway)),),
            routes=routes, bridge=conf.bridge, mtu=conf.mtu,
        )

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        conf = BridgeConf.of(net, self._ctx.underlay)
        host = prev.host_interface()
        host_if = host.name if host else veth_name(net.name, att)
        fw = self._ctx.firewall
        async with route_socket(self._ctx.host_netns) as ipr:
            problems = await check_bridge(ipr, conf)
            problems += await _check_port(ipr, conf, host_if)
        try:
            problems += await _check_container(att, conf)
        except NetnsNotFoundError as exc:
            problems.append(str(exc))
        problems += await sysctl_problems(fw, conf)
        problems += await fw.check(network_ruleset(conf))
        ports = container_ruleset(conf, att)
        if ports.chains:
            problems += await fw.check(ports)
        else:
            problems += await fw.absent(ports.owner)
        if problems:
            raise CheckFailedError(f"bridge {net.name}: {att.container_name}", problems)

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        await self._ctx.firewall.remove(container_owner(net.name, att))
        host = prev.host_interface() if prev else None
        names = {veth_name(net.name, att)} | ({host.name} if host else set())
        async with route_socket(self._ctx.host_netns) as ipr:
            for name in sorted(names):
                await remove_link(ipr, name)


async def _check_port(ipr: Any, conf: BridgeConf, host_if: str) -> list[str]:
    info = await link_info(ipr, host_if)
    if info is None:
        return [f"host veth {host_if} is missing"]
    problems = []
    br_index = await link_index(ipr, conf.bridge)
    if br_index is not None and info.get_attr("IFLA_MASTER") != br_index:
        problems.append(f"host veth {host_if} is not a port of {conf.bridge}")
    elif br_index is not None and not port_hairpin(info):
        problems.append(f"host veth {host_if} has hairpin mode off")
    problems += link_problems(info, f"host veth {host_if}", conf.mtu)
    return problems


async def _check_container(att: Attachment, conf: BridgeConf) -> list[str]:
    async with route_socket(att.netns) as cns:
        info = await link_info(cns, att.ifname)
        if info is None:
            return [f"{att.ifname} is missing in the container"]
        where = f"container {att.ifname}"
        return link_problems(info, where, conf.mtu) + await address_problems(
            cns, info, replace(att, gateway=str(conf.gateway)), where,
            mac=att.mac or mac_from_ip(att.ip))
