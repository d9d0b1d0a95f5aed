"""The per-network host devices of the overlay: bridge ``bo-<vni>`` and VXLAN ``vx-<vni>``.

Called by overlay.host (ensure on every sync, teardown) and overlay.driver (ensure before
the first veth, check). Everything here is idempotent and reads the kernel before acting,
so a device someone deleted or misconfigured is put back on the next pass.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from netplugins.contract import NetConf, Underlay
from netplugins.errors import KernelError, NetworkConfigError
from netplugins.netlink import IFF_UP, kernel, link_index, link_info, tolerate

VXLAN_PORT = 4789          # IANA; Linux defaults to 8472 unless told
VXLAN_OVERHEAD = 50        # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
MAX_VNI = (1 << 24) - 1


def bridge_name(vni: int) -> str:
    return f"bo-{vni}"       # <= 11 chars for any 24-bit VNI (IFNAMSIZ is 16)


def vxlan_name(vni: int) -> str:
    return f"vx-{vni}"


def port_alias(vni: int) -> str:
    """The ifalias the driver puts on each container's host veth, so that a recreated bridge
    can take its ports back without knowing the containers."""
    return f"berth-overlay-{vni}"


def overlay_mtu(net: NetConf, underlay: Underlay) -> int:
    """The network's MTU: explicit if set, else the underlay's minus the VXLAN overhead."""
    mtu = net.mtu or underlay.mtu - VXLAN_OVERHEAD
    if not 68 <= mtu <= underlay.mtu - VXLAN_OVERHEAD:
        raise NetworkConfigError(
            f"network {net.name}: MTU {mtu} does not fit in underlay MTU {underlay.mtu} "
            f"minus {VXLAN_OVERHEAD} bytes of VXLAN overhead"
        )
    return mtu


def validate(net: NetConf) -> None:
    if not 1 <= net.vni <= MAX_VNI:
        raise NetworkConfigError(
            f"network {net.name}: overlay needs a VNI in 1..{MAX_VNI}, got {net.vni}"
        )


def _vxlan_differs(info: Any, net: NetConf, underlay: Underlay, underlay_index: int) -> bool:
    """True if an existing vx-<vni> is not the device we would create (kind, VNI, VTEP...)."""
    linkinfo = info.get_attr("IFLA_LINKINFO")
    if linkinfo is None or linkinfo.get_attr("IFLA_INFO_KIND") != "vxlan":
        return True
    data = linkinfo.get_attr("IFLA_INFO_DATA")
    want = {
        "IFLA_VXLAN_ID": net.vni,
        "IFLA_VXLAN_LOCAL": underlay.ip,
        "IFLA_VXLAN_LINK": underlay_index,
        "IFLA_VXLAN_PORT": VXLAN_PORT,
        "IFLA_VXLAN_LEARNING": 0,
        "IFLA_VXLAN_PROXY": 1,
    }
    return any(data.get_attr(k) != v for k, v in want.items())


async def _create(ipr: Any, name: str, **attrs: Any) -> None:
    # EEXIST: the driver and the host's sync may race to create the same device.
    try:
        await ipr.link("add", ifname=name, **attrs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise KernelError(f"create {name}: {os.strerror(exc.code)}", errno=exc.code) from exc


async def _index_of_new(ipr: Any, name: str) -> int:
    index = await link_index(ipr, name)
    if index is None:  # someone deleted it between our create and this lookup
        raise KernelError(f"{name} vanished right after it was created", errno=errno.ENODEV)
    return index


async def ensure_devices(ipr: Any, net: NetConf, underlay: Underlay) -> list[str]:
    """Create or repair the bridge and VXLAN device; return what had to be (re)created."""
    validate(net)
    mtu = overlay_mtu(net, underlay)
    br, vx = bridge_name(net.vni), vxlan_name(net.vni)
    underlay_index = await link_index(ipr, underlay.ifname)
    if underlay_index is None:
        raise KernelError(f"underlay interface {underlay.ifname} not found", errno=errno.ENODEV)
    repaired: list[str] = []
    if await link_info(ipr, br) is None:
        await _create(ipr, br, kind="bridge", mtu=mtu)
        repaired.append(br)
    br_index = await _index_of_new(ipr, br)
    info = await link_info(ipr, vx)
    if info is not None and _vxlan_differs(info, net, underlay, underlay_index):
        await tolerate(ipr.link("del", ifname=vx), errno.ENODEV)
        info = None
    if info is None:
        await _create(
            ipr, vx, kind="vxlan", mtu=mtu, vxlan_id=net.vni, vxlan_local=underlay.ip,
            vxlan_link=underlay_index, vxlan_port=VXLAN_PORT, vxlan_learning=0, vxlan_proxy=1,
        )
        repaired.append(vx)
    vx_index = await _index_of_new(ipr, vx)
    await kernel(f"set {vx} up on {br}", ipr.link("set", index=vx_index, master=br_index,
                                                 mtu=mtu, state="up"))
    await kernel(f"set {br} up", ipr.link("set", index=br_index, mtu=mtu, state="up"))
    repaired += await _reattach_ports(ipr, net.vni, br_index)
    return repaired


async def _reattach_ports(ipr: Any, vni: int, br_index: int) -> list[str]:
    """Put container veths of this network back on the bridge (after it was recreated)."""
    alias, moved = port_alias(vni), []
    async for link in await kernel("dump links", ipr.link("dump")):
        if link.get_attr("IFLA_IFALIAS") == alias and link.get_attr("IFLA_MASTER") != br_index:
            name = link.get_attr("IFLA_IFNAME")
            await kernel(f"attach {name} to bridge", ipr.link(
                "set", index=link["index"], master=br_index, state="up"))
            moved.append(name)
    return moved


async def check_devices(ipr: Any, net: NetConf, underlay: Underlay) -> list[str]:
    """Describe every way the host devices differ from what ensure_devices makes."""
    mtu = overlay_mtu(net, underlay)
    br, vx = bridge_name(net.vni), vxlan_name(net.vni)
    problems: list[str] = []
    br_info = await link_info(ipr, br)
    if br_info is None:
        problems.append(f"bridge {br} is missing")
    elif not br_info["flags"] & IFF_UP:
        problems.append(f"bridge {br} is down")
    vx_info = await link_info(ipr, vx)
    underlay_index = await link_index(ipr, underlay.ifname)
    if vx_info is None:
        problems.append(f"VXLAN device {vx} is missing")
        return problems
    if underlay_index is None or _vxlan_differs(vx_info, net, underlay, underlay_index):
        problems.append(
            f"VXLAN device {vx} is not VNI {net.vni} on {underlay.ip} port {VXLAN_PORT}"
        )
    if br_info is not None and vx_info.get_attr("IFLA_MASTER") != br_info["index"]:
        problems.append(f"VXLAN device {vx} is not a port of {br}")
    if not vx_info["flags"] & IFF_UP:
        problems.append(f"VXLAN device {vx} is down")
    if vx_info.get_attr("IFLA_MTU") != mtu:
        problems.append(f"VXLAN device {vx} has MTU {vx_info.get_attr('IFLA_MTU')}, want {mtu}")
    return problems


async def remove_devices(ipr: Any, vni: int) -> None:
    """Delete the VXLAN device and the bridge; already gone is fine."""
    for name in (vxlan_name(vni), bridge_name(vni)):
        await kernel(f"delete {name}", tolerate(ipr.link("del", ifname=name), errno.ENODEV))
