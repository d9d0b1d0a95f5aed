"""Node registration: the node record lives under an etcd lease the agent keeps alive.

While the key /berth/nodes/<node> exists the controller counts the node as Ready;
if the agent dies the lease expires and the key goes with it (flannel's subnet
lease works the same way). Called by agent.main; runs until cancelled.

The record carries the node's own IPv4 addresses and non-default routes
(``host_prefixes``) so that the controller can refuse a container subnet that would
collide with them. Devices berth creates itself are left out (their names start with
BERTH_DEVICE); so are loopback, the default route and the kernel's local table.
They are read once at start-up: a host that changes its addressing restarts its agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from datetime import UTC, datetime
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from berth import keyspace
from berth.errors import TemporaryError
from berth.etcd import Etcd3Client
from berth.records import HostPrefix, NodeRecord
from netplugins.netlink import kernel, route_socket

log = logging.getLogger(__name__)

# The overlay's bridge "bo-<vni>" and VXLAN "vx-<vni>" (netplugins/overlay/devices.py) and
# its host veths "vo<11 hex>" (netplugins/overlay/driver.py). A unit test pins them together.
# The bridge driver's bridges "berth0" (the default network) and "bb-<10 hex>", and its
# host veths "v<14 hex>" (netplugins/bridge/config.py).
BERTH_DEVICE = re.compile(r"(bo|vx)-[0-9]{1,8}|vo[0-9a-f]{11}|berth0|bb-[0-9a-f]{10}"
                          r"|v[0-9a-f]{14}")
IFF_LOOPBACK = 0x8
MAIN_TABLE = 254


def is_berth_device(name: str) -> bool:
    return BERTH_DEVICE.fullmatch(name) is not None


async def host_prefixes(
    netns: str | None = None,
) -> tuple[tuple[HostPrefix, ...], tuple[HostPrefix, ...]]:
    """The node's IPv4 addresses and non-default main-table routes, without berth's own."""
    async with route_socket(netns) as ipr:
        names: dict[int, str] = {}
        loopback: set[int] = set()
        async for link in await kernel("list links", ipr.link("dump")):
            names[link["index"]] = link.get_attr("IFLA_IFNAME") or ""
            if link["flags"] & IFF_LOOPBACK:
                loopback.add(link["index"])
        addresses = []
        dump = ipr.addr("dump", family=socket.AF_INET)
        async for msg in await kernel("list addresses", dump):
            device = names.get(msg["index"], "")
            if msg["index"] in loopback or is_berth_device(device):
                continue
            addresses.append(HostPrefix(cidr=f"{_address(msg)}/{msg['prefixlen']}",
                                        device=device))
        routes = []
        async for msg in await kernel("list routes", ipr.route("dump", family=socket.AF_INET,
                                                               table=MAIN_TABLE)):
            device = names.get(msg.get_attr("RTA_OIF") or 0, "")
            if msg["dst_len"] == 0 or is_berth_device(device) or _table(msg) != MAIN_TABLE:
                continue
            routes.append(HostPrefix(cidr=f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}",
                                     device=device))
    return tuple(addresses), tuple(routes)


def _address(msg: Any) -> str:
    return str(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"))


def _table(msg: Any) -> int:
    return int(msg.get_attr("RTA_TABLE") or msg["table"])


def node_record(
    name: str, address: str, agent_addr: str, *, mtu: int = 1500,
    addresses: tuple[HostPrefix, ...] = (), routes: tuple[HostPrefix, ...] = (),
    bip: str = "", gwbridge: str = "",
) -> NodeRecord:
    return NodeRecord(
        name=name,
        address=address,
        agent_addr=agent_addr,
        mtu=mtu,
        cpus=os.cpu_count() or 1,
        memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        started_at=datetime.now(UTC).isoformat(),
        addresses=addresses,
        routes=routes,
        bip=bip,
        gwbridge=gwbridge,
    )


class Registration:
    """Keeps /berth/nodes/<node> attached to a live lease, re-granting after loss."""

    def __init__(self, etcd: Etcd3Client, record: NodeRecord, ttl: int) -> None:
        self._etcd = etcd
        self._record = record
        self._ttl = ttl
        self.registered = asyncio.Event()

    async def _hold_once(self) -> None:
        lease = await self._etcd.lease(self._ttl)
        try:
            await self._etcd.put(
                keyspace.node(self._record.name), self._record.dumps(), lease=lease
            )
            self.registered.set()
            log.info("node %s registered with lease %x", self._record.name, lease.id)
            await lease.keepalive()
        finally:
            self.registered.clear()
        raise TemporaryError(f"lease {lease.id:x} lost", delay=0.5)

    async def run(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=5),
        ):
            with attempt:
                try:
                    await self._hold_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("registration: %s; retrying", exc)
                    raise
