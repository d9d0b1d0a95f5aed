"""The lab's network: namespaces, the underlay bridge, veths, addresses; and subnet choice.

Design notes:
- One switch netns ``bl-<lab>-sw`` holds a Linux bridge ``br0``. Every host netns
  (``bl-<lab>-hN``) and the control netns (``bl-<lab>-ctl``) gets ``eth0``, a veth whose
  peer is created directly inside the switch netns and enslaved to ``br0``. Links are made
  from the switch side so their names never touch the root netns.
- The only root-netns object is the veth ``bl-<lab>`` with ``.1/24`` on the lab subnet;
  its peer lands in the switch netns. IPv6 is switched off on it before it comes up, so
  the root routing tables gain exactly one connected IPv4 route and nothing else, and so
  is IPv4 forwarding of what arrives on it, so the root netns never routes lab traffic
  out even where the machine forwards.
- Nobody gets a default route, so lab traffic cannot leave the lab namespaces.
- The outside host ``bl-<lab>-out`` stands in for "the internet" in egress tests: it hangs
  off ``br0`` like a host (``.254`` on the lab subnet) and holds ``198.51.100.1``
  (TEST-NET-2, RFC 5737; /32 on its ``lo``: this kernel has no dummy devices). Every host
  netns routes ``198.51.100.0/24`` via ``.254`` and forwards IPv4 (``ip_forward=1``, which
  the bridge driver needs). Those routes and sysctls exist only inside lab host namespaces:
  the root netns gains nothing, and no namespace gets a default route, so a container's
  "egress" ends at the outside host and never at a real address. It runs nothing;
  tests start what they need in it (``nsenter --net=/run/netns/bl-<lab>-out ...``).
- Every step is an ``ensure``: ``up`` on a half-built lab completes it.
- The subnet is the first /24 of 10.251.0.0/16 that no other lab state file uses and
  that overlaps no address or route in the root netns.
Called by ``lab.py``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.netns import (
    NetnsError,
    NetnsThread,
    create_named,
    netlink_socket,
    open_netns,
    remove_named,
)
from clusterctl.lab.errors import LabError
from clusterctl.lab.state import (
    NETNS_DIR,
    OUTSIDE_ADDRESS,
    OUTSIDE_NETWORK,
    OUTSIDE_ROLE,
    LabState,
    netns_prefix,
    root_link,
)

POOL = ipaddress.IPv4Network("10.251.0.0/16")
MTU = 1500
BRIDGE = "br0"
ROOT_PEER = "uplink"   # the switch-side end of the root veth


async def _in(ns: str) -> AsyncIPRoute:
    """A route socket inside the lab netns NS, made without pyroute2's fork."""
    return AsyncIPRoute(fileno=(await netlink_socket(str(NETNS_DIR / ns))).detach())


def lab_netns(name: str) -> list[str]:
    """Every netns of the lab that exists now (also ones a newer version might add)."""
    if not NETNS_DIR.is_dir():
        return []
    prefix = netns_prefix(name)
    return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))


async def used_networks() -> list[ipaddress.IPv4Network]:
    """Networks of every IPv4 address and non-default route in the root netns."""
    used: list[ipaddress.IPv4Network] = []
    async with AsyncIPRoute() as ipr:
        async for msg in await ipr.addr("dump", family=2):
            used.append(_net(msg.get("address"), msg["prefixlen"]))
        async for msg in await ipr.route("dump", family=2):
            if msg["dst_len"] > 0 and msg.get("dst"):
                used.append(_net(msg.get("dst"), msg["dst_len"]))
    return used


def _net(address: str, prefixlen: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False)


def choose_subnet(taken_by_labs: list[str], used: list[ipaddress.IPv4Network]) -> str:
    labs = {ipaddress.IPv4Network(s) for s in taken_by_labs}
    for candidate in POOL.subnets(new_prefix=24):
        if candidate in labs or any(candidate.overlaps(u) for u in used):
            continue
        return str(candidate)
    raise LabError(f"no free /24 left in {POOL} for another lab")


async def ensure_topology(state: LabState) -> None:
    prefix = netns_prefix(state.name)
    members = {f"{prefix}{h}": state.host_ip(i) for i, h in enumerate(state.host_names(), 1)}
    members[f"{prefix}ctl"] = state.ctl_ip
    members[f"{prefix}{OUTSIDE_ROLE}"] = state.outside_ip
    switch = f"{prefix}sw"
    for ns in [switch, *members]:
        if not (NETNS_DIR / ns).exists():
            await create_named(ns)
    try:
        async with await _in(switch) as sw:
            await _up(sw, "lo")
            bridge = await _ensure_link(sw, ifname=BRIDGE, kind="bridge")
            for ns in members:
                port = ns.removeprefix(prefix)
                await _ensure_link(sw, ifname=port, kind="veth",
                                   peer={"ifname": "eth0", "net_ns_fd": ns})
                await _up(sw, port, master=bridge)
        for ns, address in members.items():
            async with await _in(ns) as ipr:
                await _up(ipr, "lo")
                await _address(ipr, "eth0", address)
                await _up(ipr, "eth0")
        await _ensure_root_link(state, switch)
        async with await _in(switch) as sw:
            await _up(sw, ROOT_PEER, master=bridge)
            await _up(sw, BRIDGE)
        await _ensure_outside(state)
    except NetlinkError as exc:
        raise LabError(f"building the lab network of {state.name!r} failed: {exc}") from exc


async def _ensure_outside(state: LabState) -> None:
    """The outside host's test address, and each host's route to it and forwarding."""
    prefix = netns_prefix(state.name)
    async with await _in(f"{prefix}{OUTSIDE_ROLE}") as ipr:
        await _address(ipr, "lo", OUTSIDE_ADDRESS, prefixlen=32)
    network = ipaddress.IPv4Network(OUTSIDE_NETWORK)
    for host in state.host_names():
        async with await _in(f"{prefix}{host}") as ipr:
            await ipr.route("replace", dst=str(network.network_address),
                            dst_len=network.prefixlen, gateway=state.outside_ip)
        await _sysctl(f"{prefix}{host}", "net/ipv4/ip_forward", "1")


async def _sysctl(ns: str, key: str, value: str) -> None:
    """Write /proc/sys/KEY as seen from inside lab netns NS (never the root netns's)."""
    handle = open_netns(str(NETNS_DIR / ns))
    thread = NetnsThread()
    try:
        await thread.run(handle, lambda: Path("/proc/sys", key).write_text(f"{value}\n"))
    except OSError as exc:
        raise LabError(f"cannot set {key} in netns {ns}: {exc}") from exc
    finally:
        thread.close()
        handle.close()


async def _ensure_root_link(state: LabState, switch: str) -> None:
    name = root_link(state.name)
    async with AsyncIPRoute() as ipr:
        if not await ipr.link_lookup(ifname=name):
            await ipr.link("add", ifname=name, kind="veth", mtu=MTU,
                           peer={"ifname": ROOT_PEER, "net_ns_fd": switch, "mtu": MTU})
        # Without this the veth would add fe80::/64 and multicast routes to the root netns.
        await asyncio.to_thread(
            Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text, "1\n"
        )
        # Never route what arrives from the lab (a container whose gateway is this address,
        # say) onwards, even on a machine that forwards: the root netns is no lab's router.
        await asyncio.to_thread(
            Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding").write_text, "0\n"
        )
        await _address(ipr, name, state.root_ip)
        await _up(ipr, name)


async def _index(ipr: Any, ifname: str) -> int:
    found = await ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"link {ifname} is missing")
    return int(found[0])


async def _ensure_link(ipr: Any, **spec: Any) -> int:
    if not await ipr.link_lookup(ifname=spec["ifname"]):
        if "peer" in spec:
            spec["peer"] = {**spec["peer"], "mtu": MTU}
        await ipr.link("add", mtu=MTU, **spec)
    return await _index(ipr, spec["ifname"])


async def _up(ipr: Any, ifname: str, **extra: Any) -> None:
    mtu = {} if ifname == "lo" else {"mtu": MTU}
    await ipr.link("set", index=await _index(ipr, ifname), state="up", **mtu, **extra)


async def _address(ipr: Any, ifname: str, address: str, prefixlen: int = 24) -> None:
    try:
        await ipr.addr("add", index=await _index(ipr, ifname), address=address,
                       prefixlen=prefixlen)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


async def delete_topology(name: str) -> None:
    """Remove the root veth (and so its peer) and every netns of the lab. Idempotent."""
    async with AsyncIPRoute() as ipr:
        for index in await ipr.link_lookup(ifname=root_link(name)):
            try:
                await ipr.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise LabError(f"cannot delete link {root_link(name)}: {exc}") from exc
    for ns in lab_netns(name):
        try:
            await remove_named(ns)
        except NetnsError as exc:
            raise LabError(f"cannot delete netns {ns}: {exc}") from exc
