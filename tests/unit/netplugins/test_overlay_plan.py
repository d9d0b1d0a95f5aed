"""The overlay's desired-vs-actual diff (fdb.plan_sync): pure, no kernel."""

from __future__ import annotations

import pytest

from netplugins.contract import Peer, mac_from_ip
from netplugins.overlay.fdb import FdbEntry, NeighEntry, SyncPlan, plan_sync

LOCAL = "10.250.0.11"
REMOTE = "10.250.0.12"
OTHER = "10.250.0.13"


def peer(ip: str, host: str) -> Peer:
    return Peer(ip, mac_from_ip(ip), host)


def neigh(ip: str) -> NeighEntry:
    return NeighEntry(ip, mac_from_ip(ip))


def fdb(ip: str, host: str) -> FdbEntry:
    return FdbEntry(mac_from_ip(ip), host)


A, B, C = "10.42.0.2", "10.42.0.3", "10.42.0.4"

CASES = [
    pytest.param([], [], [], SyncPlan(), id="nothing"),
    pytest.param(
        [peer(A, REMOTE)], [], [],
        SyncPlan(fdb_replace=(fdb(A, REMOTE),), neigh_replace=(neigh(A),)),
        id="new-remote-peer",
    ),
    pytest.param([peer(A, LOCAL)], [], [], SyncPlan(), id="local-peer-needs-nothing"),
    pytest.param(
        [peer(A, REMOTE)], [neigh(A)], [fdb(A, REMOTE)], SyncPlan(), id="in-sync",
    ),
    pytest.param(
        [peer(A, REMOTE)], [neigh(A)], [],
        SyncPlan(fdb_replace=(fdb(A, REMOTE),)),
        id="fdb-entry-deleted-behind-our-back",
    ),
    pytest.param(
        [], [neigh(A)], [fdb(A, REMOTE)],
        SyncPlan(neigh_delete=(neigh(A),), fdb_delete=(fdb(A, REMOTE),)),
        id="peer-gone",
    ),
    pytest.param(
        [peer(A, LOCAL)], [neigh(A)], [fdb(A, REMOTE)],
        SyncPlan(neigh_delete=(neigh(A),), fdb_delete=(fdb(A, REMOTE),)),
        id="peer-moved-here",
    ),
    pytest.param(
        [peer(A, OTHER)], [neigh(A)], [fdb(A, REMOTE)],
        SyncPlan(fdb_replace=(fdb(A, OTHER),), fdb_delete=(fdb(A, REMOTE),)),
        id="peer-moved-to-another-host",
    ),
    pytest.param(
        [peer(A, REMOTE)], [NeighEntry(A, "02:42:de:ad:be:ef")], [fdb(A, REMOTE)],
        SyncPlan(neigh_replace=(neigh(A),)),
        id="wrong-mac-replaced-not-deleted",
    ),
    pytest.param(
        [peer(A, REMOTE), peer(B, REMOTE)], [neigh(A), neigh(C)],
        [fdb(A, REMOTE), fdb(C, OTHER)],
        SyncPlan(
            fdb_replace=(fdb(B, REMOTE),), neigh_replace=(neigh(B),),
            neigh_delete=(neigh(C),), fdb_delete=(fdb(C, OTHER),),
        ),
        id="add-one-keep-one-drop-one",
    ),
    pytest.param(
        [peer(A, OTHER), peer(A, REMOTE)], [], [],
        SyncPlan(fdb_replace=(fdb(A, OTHER),), neigh_replace=(neigh(A),)),
        id="conflicting-claims-pick-greatest-host",
    ),
]


@pytest.mark.parametrize(("peers", "have_neigh", "have_fdb", "want"), CASES)
def test_plan_sync(
    peers: list[Peer], have_neigh: list[NeighEntry], have_fdb: list[FdbEntry], want: SyncPlan
) -> None:
    plan = plan_sync(peers, LOCAL, have_neigh, have_fdb)
    assert plan == want
    assert plan.empty == (want == SyncPlan())


def test_plan_does_not_depend_on_input_order() -> None:
    peers = [peer(B, REMOTE), peer(A, OTHER), peer(C, REMOTE)]
    assert plan_sync(peers, LOCAL, [], []) == plan_sync(list(reversed(peers)), LOCAL, [], [])
