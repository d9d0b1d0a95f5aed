"""Facts for ``clusterctl netcheck``: what this node holds for one network, no verdicts.

agent.server's NetDiag calls ``diagnose``. The controller describes the network as it
assigned it (driver, VNI, subnet, which containers are on this node, which names to
look up); this module reads the kernel (the driver's host devices, FDB and neighbour
entries on them, host routes into the subnet, each local container's host-side
interface) and the agent's own tables (DNS records, endpoints, resolvers). clusterctl
turns the facts of every node into a diagnosis per failing pair, so the reasoning
stays in one pure, unit-tested function there.

Every read is a dump or a lookup: nothing here changes the node, and a missing device
is a fact ("present: false"), not an error.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent.dns import Records
from agent.endpoints import EndpointTable
from agent.netresults import ResultStore
from berth.errors import UserError
from netplugins.bridge import config as bridge
from netplugins.contract import HostContext
from netplugins.netlink import IFF_UP, link_index, link_info, route_socket
from netplugins.overlay.devices import bridge_name, vxlan_name
from netplugins.overlay.fdb import read_entries
from protos import netcheck_pb2

Request = netcheck_pb2.NetDiagRequest


Device = tuple[str, str]      # name, kind


def _overlay_devices(req: Request) -> tuple[Device, ...]:
    if not req.vni:
        return ()
    return (bridge_name(req.vni), "bridge"), (vxlan_name(req.vni), "vxlan")


def _bridge_devices(req: Request) -> tuple[Device, ...]:
    return ((bridge.bridge_name(req.network), "bridge"),)


def _no_devices(req: Request) -> tuple[Device, ...]:
    return ()


# The host-wide devices (name, kind) each driver makes for a network; a driver that makes
# none (or that is not listed yet) reports only routes, DNS and local interfaces.
DEVICES: Mapping[str, Callable[[Request], tuple[Device, ...]]] = {
    "overlay": _overlay_devices,
    "bridge": _bridge_devices,
    # macvlan makes its devices inside the containers (and a VLAN parent, which the
    # operator may own): nothing host-wide of its own to report.
}


class Resolvers(Protocol):
    def attached(self) -> dict[str, frozenset[str]]: ...


class NetView(Protocol):
    """What of agent.network.NetworkManager this module reads (it satisfies this)."""

    @property
    def node(self) -> str: ...
    @property
    def ctx(self) -> HostContext: ...
    @property
    def records(self) -> Records: ...
    @property
    def dns(self) -> Resolvers: ...
    @property
    def table(self) -> EndpointTable: ...
    @property
    def results(self) -> ResultStore: ...


# Container and network names reach file paths (the stored ADD results): one path
# segment of DNS-name characters, never "." or "..".
_NAME = re.compile(r"[a-z0-9]([-a-z0-9_.]{0,251}[a-z0-9])?")


def _check_names(req: Request) -> None:
    for what, name in [("network", req.network), *(("container", n) for n in req.local)]:
        if not _NAME.fullmatch(name) or ".." in name:
            raise UserError(f"netdiag: {what} name {name[:80]!r} is not a valid name")


async def diagnose(view: NetView, req: Request) -> netcheck_pb2.NetDiagResponse:
    _check_names(req)
    resp = netcheck_pb2.NetDiagResponse(node=view.node, host_ip=view.ctx.underlay.ip)
    async with route_socket(view.ctx.host_netns) as ipr:
        for name, kind in DEVICES.get(req.driver, _no_devices)(req):
            link = await _link(ipr, name)
            link.want_kind = kind
            resp.links.append(link)
            if link.present and link.kind == "vxlan":
                await _entries(ipr, name, resp)
        resp.routes.extend(await _routes(ipr, req.subnet))
        for container in req.local:
            resp.locals.append(await _local(ipr, view, req.network, container))
    for name in req.names:
        resp.names.append(_name(view, req.network, name))
    return resp


async def _link(ipr: Any, name: str) -> netcheck_pb2.LinkFact:
    info = await link_info(ipr, name)
    if info is None:
        return netcheck_pb2.LinkFact(name=name, present=False)
    linkinfo = info.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else ""
    master = ""
    if info.get_attr("IFLA_MASTER"):
        found = await ipr.link("get", index=info.get_attr("IFLA_MASTER"))
        master = found[0].get_attr("IFLA_IFNAME") if found else ""
    return netcheck_pb2.LinkFact(
        name=name, present=True, kind=kind or "", up=bool(info["flags"] & IFF_UP),
        master=master, mtu=info.get_attr("IFLA_MTU") or 0,
    )  # fmt: skip


async def _entries(ipr: Any, device: str, resp: netcheck_pb2.NetDiagResponse) -> None:
    index = await link_index(ipr, device)
    if index is None:       # deleted between the two reads: report it as it is now
        return
    neigh, fdb = await read_entries(ipr, index)
    resp.fdb.extend(netcheck_pb2.FdbFact(device=device, mac=f.mac, dst=f.dst)
                    for f in sorted(fdb))
    resp.neighbours.extend(netcheck_pb2.NeighFact(device=device, ip=n.ip, mac=n.mac)
                           for n in sorted(neigh))


async def _routes(ipr: Any, subnet: str) -> list[netcheck_pb2.RouteFact]:
    try:
        net = ipaddress.IPv4Network(subnet, strict=False)
    except ValueError:
        return []
    names: dict[int, str] = {}
    found = []
    async for msg in await ipr.route("dump", family=socket.AF_INET):
        dst, length = msg.get_attr("RTA_DST"), msg["dst_len"]
        if not dst or not length or msg.get_attr("RTA_TABLE") == 255:   # default, local
            continue
        if not ipaddress.IPv4Network(f"{dst}/{length}", strict=False).overlaps(net):
            continue
        oif = msg.get_attr("RTA_OIF") or 0
        if oif and oif not in names:
            links = await ipr.link("get", index=oif)
            names[oif] = links[0].get_attr("IFLA_IFNAME") if links else str(oif)
        found.append(netcheck_pb2.RouteFact(dst=f"{dst}/{length}", device=names.get(oif, ""),
                                            gateway=msg.get_attr("RTA_GATEWAY") or ""))
    return found


async def _local(ipr: Any, view: NetView, network: str, container: str) -> netcheck_pb2.LocalFact:
    fact = netcheck_pb2.LocalFact(
        container=container,
        resolver=network in view.dns.attached().get(container, frozenset()),
    )
    stored = view.results.load_stored(container, network)
    if stored is None:
        return fact
    fact.attached = True
    host_if = stored.result.host_interface()
    if host_if is None:
        return fact
    link = await _link(ipr, host_if.name)
    fact.host_ifname, fact.present = host_if.name, link.present
    fact.up, fact.master = link.up, link.master
    return fact


def _name(view: NetView, network: str, name: str) -> netcheck_pb2.NameFact:
    fact = netcheck_pb2.NameFact(name=name, ips=view.records.lookup(name, [network]))
    ep = view.table.get(network, name)
    if ep is not None:
        fact.endpoint, fact.endpoint_ip, fact.endpoint_node = True, ep.ip, ep.node
    return fact
