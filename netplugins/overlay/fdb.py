"""Peer entries on the VXLAN device: the desired-vs-actual diff (pure) and its kernel side.

Called by overlay.host.OverlayHost.sync on every pass. ``plan_sync`` is a pure function so
the diff logic is unit-tested without a kernel; ``read_entries`` and ``apply_plan`` are the
only parts that talk netlink. See host.py for why the entries are static.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.rtnl import ndmsg

from netplugins.contract import Peer
from netplugins.netlink import kernel, tolerate

log = logging.getLogger(__name__)

AF_BRIDGE = 7
NUD_PERMANENT = ndmsg.states["permanent"]
NUD_NOARP = ndmsg.states["noarp"]
NTF_SELF = ndmsg.flags["self"]
_ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True, order=True)
class NeighEntry:
    """A permanent ARP entry on the VXLAN device: remote container IP -> its MAC."""

    ip: str
    mac: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    """A VXLAN FDB entry: remote container MAC -> the underlay IP of its host."""

    mac: str
    dst: str


@dataclass(frozen=True)
class SyncPlan:
    """Changes that bring the kernel to the desired entries, applied in field order:
    FDB before ARP when adding (the first packet must know where to go), ARP before FDB
    when removing."""

    fdb_replace: tuple[FdbEntry, ...] = ()
    neigh_replace: tuple[NeighEntry, ...] = ()
    neigh_delete: tuple[NeighEntry, ...] = ()
    fdb_delete: tuple[FdbEntry, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.fdb_replace or self.neigh_replace or self.neigh_delete or self.fdb_delete)


def remote_peers(peers: Iterable[Peer], local_ip: str) -> dict[str, Peer]:
    """Remote peers by IP. Local endpoints are skipped: the bridge reaches them directly.

    If two records claim one IP (a container moved and the old record has not expired),
    the choice must be the same on every pass and every host, so the greatest host IP wins;
    the stale one disappears when its owner's lease ends.
    """
    chosen: dict[str, Peer] = {}
    for peer in sorted(p for p in peers if p.host_ip != local_ip):
        previous = chosen.get(peer.ip)
        if previous is not None and previous.host_ip != peer.host_ip:
            log.warning(
                "overlay peer %s claimed by %s and %s", peer.ip, previous.host_ip, peer.host_ip
            )
        chosen[peer.ip] = peer
    return chosen


def plan_sync(
    peers: Iterable[Peer],
    local_ip: str,
    neigh: Iterable[NeighEntry],
    fdb: Iterable[FdbEntry],
) -> SyncPlan:
    """Diff desired remote entries against what the kernel holds on the VXLAN device."""
    remote = remote_peers(peers, local_ip)
    want_neigh = {p.ip: p.mac for p in remote.values()}
    want_fdb = {p.mac: p.host_ip for p in remote.values()}
    have_neigh = {e.ip: e.mac for e in neigh}
    have_fdb = set(fdb)
    return SyncPlan(
        fdb_replace=tuple(
            sorted(FdbEntry(m, d) for m, d in want_fdb.items() if FdbEntry(m, d) not in have_fdb)
        ),
        neigh_replace=tuple(
            sorted(NeighEntry(ip, m) for ip, m in want_neigh.items() if have_neigh.get(ip) != m)
        ),
        # A neighbour entry is keyed by IP: one whose MAC changed is fixed by the replace
        # above, and deleting it by IP afterwards would remove the fresh entry.
        neigh_delete=tuple(
            sorted(NeighEntry(ip, m) for ip, m in have_neigh.items() if ip not in want_neigh)
        ),
        # An FDB entry can hold several remotes; delete each one that is not wanted, by
        # (mac, dst), so the wanted remote of a moved MAC survives.
        fdb_delete=tuple(sorted(e for e in have_fdb if want_fdb.get(e.mac) != e.dst)),
    )


async def read_entries(ipr: Any, vx_index: int) -> tuple[set[NeighEntry], set[FdbEntry]]:
    """Read the neighbour and FDB tables of the VXLAN device from the kernel."""
    neigh: set[NeighEntry] = set()
    async for msg in await kernel("dump neighbours", ipr.neigh("dump", family=socket.AF_INET)):
        if msg["ifindex"] == vx_index and msg.get_attr("NDA_LLADDR"):
            neigh.add(NeighEntry(msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")))
    fdb: set[FdbEntry] = set()
    async for msg in await kernel("dump fdb", ipr.neigh("dump", family=AF_BRIDGE)):
        # Only the VXLAN device's own entries carry NDA_DST; the bridge's learned
        # entries for the same port ("master") do not, and are not ours to manage.
        dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
        if msg["ifindex"] == vx_index and dst and mac and mac != _ZERO_MAC:
            fdb.add(FdbEntry(mac, dst))
    return neigh, fdb


async def apply_plan(ipr: Any, vx_index: int, plan: SyncPlan) -> None:
    """Program the plan with replace semantics; deleting what is already gone is fine."""
    for f in plan.fdb_replace:
        await kernel(
            f"fdb replace {f.mac} dst {f.dst}",
            ipr.neigh(
                "replace", family=AF_BRIDGE, ifindex=vx_index, lladdr=f.mac, dst=f.dst,
                state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF,
            ),
        )
    for n in plan.neigh_replace:
        await kernel(
            f"neigh replace {n.ip} lladdr {n.mac}",
            ipr.neigh(
                "replace", family=socket.AF_INET, ifindex=vx_index, dst=n.ip, lladdr=n.mac,
                state=NUD_PERMANENT,
            ),
        )
    for n in plan.neigh_delete:
        await kernel(
            f"neigh del {n.ip}",
            tolerate(ipr.neigh("del", family=socket.AF_INET, ifindex=vx_index, dst=n.ip),
                     errno.ENOENT),
        )
    for f in plan.fdb_delete:
        await kernel(
            f"fdb del {f.mac} dst {f.dst}",
            tolerate(
                ipr.neigh(
                    "del", family=AF_BRIDGE, ifindex=vx_index, lladdr=f.mac, dst=f.dst,
                    state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF,
                ),
                errno.ENOENT,
            ),
        )
