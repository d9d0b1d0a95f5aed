"""Bounds on what Apply accepts and what the scheduler places, against a real etcd.

Regression tests for the review's findings 5 (replicas: 1000000000 reaching etcd, a
billion-laughs file blocking a concurrent Get, 10,000 levels of nesting) and 6 (subnet
0.0.0.0/0, a subnet overlapping the hosts' underlay, a 63-character service name), plus a
hypothesis property: a refused Apply leaves etcd exactly as it was.

Node records are written into etcd as an agent would, with the addresses and routes an
agent reports (agent.registration.host_prefixes; tests/integration/test_host_prefixes.py
checks that discovery against a real namespace).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.limits import Limits
from berth.records import HostPrefix, NodeRecord
from controller.scheduler import Scheduler
from controller.server import RunningServer, start_server
from protos import controller_pb2, controller_pb2_grpc
from tests.manifests import NETWORK
from tests.manifests import SERVICE as BARE_SERVICE

pytestmark = pytest.mark.integration

SERVICE = BARE_SERVICE + "  networks: [appnet]\n"
APP = NETWORK + "---\n" + SERVICE


def billion_laughs() -> str:
    levels = ["  x-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 9):
        levels.append(f"  x-{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return ("apiVersion: berth/v1\nkind: Service\nmetadata: {name: lol}\nspec:\n"
            "  image: busybox\n" + "\n".join(levels) + "\n  command: *l8\n")


class Cluster:
    def __init__(self, etcd: Etcd3Client, stub: Any, scheduler: Scheduler) -> None:
        self.etcd = etcd
        self.stub = stub
        self.scheduler = scheduler

    async def apply(self, text: str) -> list[tuple[str, str, str]]:
        resp = await self.stub.Apply(controller_pb2.ApplyRequest(source="app.yaml",
                                                                 manifest=text.encode()))
        return [(o.kind, o.name, o.action) for o in resp.objects]

    async def refused(self, text: str) -> str:
        """Apply ``text``, expect INVALID_ARGUMENT and no change in etcd; the details."""
        before = await self.snapshot()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.apply(text)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert await self.snapshot() == before
        details = info.value.details() or ""
        assert "\n" not in details and "Error" not in details, details
        return details

    async def snapshot(self) -> dict[str, bytes]:
        listing = await self.etcd.get_prefix(keyspace.ROOT)
        return {meta.key: value for value, meta in listing.items}

    async def add_node(self, name: str, addresses: tuple[str, ...] = ("192.0.2.10/24",),
                       routes: tuple[str, ...] = ()) -> None:
        record = NodeRecord(
            name=name, address=addresses[0].split("/")[0] if addresses else "192.0.2.10",
            agent_addr="127.0.0.1:1", bip="172.17.0.1/16", gwbridge="172.18.0.1/16",
            addresses=tuple(HostPrefix(cidr=a, device="eth0") for a in addresses),
            routes=tuple(HostPrefix(cidr=r, device="wg0") for r in routes))
        await self.etcd.put(keyspace.node(name), record.dumps())

    async def containers(self) -> list[tuple[str, str, str, str]]:
        resp = await self.stub.Get(controller_pb2.GetRequest(kind="containers"))
        return [(c.name, c.node, c.state, c.error) for c in resp.containers]


async def _cluster(etcd: Etcd3Client, tmp_path: Path, limits: Limits) -> AsyncIterator[Cluster]:
    scheduler = Scheduler(etcd, limits)
    running: RunningServer = await start_server(etcd, "127.0.0.1:0", tmp_path, scheduler)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = controller_pb2_grpc.ControllerStub(channel)
            yield Cluster(etcd, stub, scheduler)
    finally:
        await running.stop(grace=None)


@pytest.fixture
async def cluster(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Cluster]:
    async for c in _cluster(etcd, tmp_path, Limits()):
        yield c


@pytest.fixture
async def small(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A controller started with --max-replicas 9 --max-containers-per-node 1."""
    async for c in _cluster(etcd, tmp_path, Limits(max_replicas=9, max_containers_per_node=1)):
        yield c


async def test_a_billion_replicas_are_refused_and_never_reach_etcd(cluster: Cluster) -> None:
    await cluster.apply(NETWORK)
    details = await cluster.refused(SERVICE.replace("replicas: 2", "replicas: 1000000000"))
    assert details == ("app.yaml: Service/web: spec.replicas: 1000000000 is more than the "
                       "maximum of 100 replicas per service (berth-controller --max-replicas, or "
                       '"max-replicas" in controller.json)')


async def test_configured_max_replicas_applies(small: Cluster) -> None:
    await small.apply(NETWORK)
    assert "maximum of 9 replicas" in await small.refused(SERVICE.replace("replicas: 2",
                                                                          "replicas: 10"))
    assert await small.apply(SERVICE.replace("replicas: 2", "replicas: 9")) == [
        ("Service", "web", "created")]


@pytest.mark.timeout(120)    # the old controller spent ~9 s of CPU; a hang must fail, not stall
async def test_billion_laughs_is_refused_while_a_concurrent_get_answers(
    cluster: Cluster,
) -> None:
    await cluster.add_node("h1")
    refusal = asyncio.ensure_future(cluster.refused(billion_laughs()))
    gets = [await cluster.stub.Get(controller_pb2.GetRequest(kind="nodes")) for _ in range(3)]
    assert all([n.name for n in g.nodes] == ["h1"] for g in gets)
    details = await refusal
    assert details.startswith("app.yaml: line 11, column ")
    assert "more than 100000 nodes once aliases are expanded" in details


async def test_ten_thousand_levels_give_one_clear_line(cluster: Cluster) -> None:
    await cluster.apply(NETWORK)
    for nested in ("[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "1" + "}" * 10_000):
        details = await cluster.refused(SERVICE + f"  command: {nested}\n")
        assert details.startswith("app.yaml: line 8, column ")
        assert "nested deeper than 64 levels" in details and "Recursion" not in details


async def test_default_route_subnet_is_refused(cluster: Cluster) -> None:
    details = await cluster.refused(NETWORK.replace("10.42.0.0/24", "0.0.0.0/0"))
    assert details == ("app.yaml: Network/appnet: spec.subnet: 0.0.0.0/0 is the default route, "
                       "not usable for containers; pick a private range such as 10.42.0.0/24")


async def test_63_character_service_name_is_refused_with_the_derived_limit(
    cluster: Cluster, small: Cluster
) -> None:
    await cluster.apply(NETWORK)
    long = SERVICE.replace("name: web", "name: " + "s" * 63)
    details = await cluster.refused(long)
    assert "metadata.name: a service name is at most 59 characters (got 63)" in details
    assert "with up to 100 replicas" in details
    # A controller allowing at most 9 replicas allows 61 characters.
    assert "at most 61 characters (got 63)" in await small.refused(long)
    assert await small.apply(SERVICE.replace("name: web", "name: " + "s" * 61)) == [
        ("Service", "s" * 61, "created")]


async def test_subnet_overlapping_a_ready_node_is_refused(cluster: Cluster) -> None:
    await cluster.add_node("h1", ("10.251.0.2/24",), routes=("172.20.0.0/16",))
    await cluster.add_node("h2", ("10.251.0.3/24",))
    details = await cluster.refused(NETWORK.replace("10.42.0.0/24", "10.251.0.0/16"))
    assert details == ("app.yaml: Network/appnet: spec.subnet: 10.251.0.0/16 overlaps node "
                       "h1's address 10.251.0.2/24 on eth0; pick a range that no node uses")
    assert "overlaps node h1's route to 172.20.0.0/16 on wg0" in await cluster.refused(
        NETWORK.replace("10.42.0.0/24", "172.20.9.0/24"))
    # In the same file as a service: nothing of the file is written either.
    await cluster.refused(APP.replace("10.42.0.0/24", "10.251.0.128/25"))
    assert await cluster.apply(APP) == [("Network", "appnet", "created"),
                                        ("Service", "web", "created")]


async def test_node_joining_later_with_an_overlap_keeps_the_network_pending_on_itself(
    cluster: Cluster,
) -> None:
    await cluster.add_node("h1")
    await cluster.apply(APP + "---\n" + SERVICE.replace("name: web", "name: pin").replace(
        "replicas: 2", "replicas: 1\n  placement: {node: late}"))
    await cluster.add_node("late", ("10.42.0.77/16",))
    await cluster.scheduler.run_pass()
    assert await cluster.containers() == [
        ("pin-1", "", "pending", "network appnet (10.42.0.0/24) overlaps node late's address "
                                 "10.42.0.77/16 on eth0"),
        ("web-1", "h1", "pending", ""), ("web-2", "h1", "pending", "")]
    # Re-applying the same file is not refused: the network already exists.
    assert [r[2] for r in await cluster.apply(APP)] == ["unchanged", "unchanged"]


async def test_containers_per_node_limit_leaves_the_rest_pending_with_reason(
    small: Cluster,
) -> None:
    await small.add_node("h1")
    await small.apply(APP)
    await small.scheduler.run_pass()
    assert await small.containers() == [
        ("web-1", "h1", "pending", ""),
        ("web-2", "", "pending", 'no Ready node can take it: node "h1" already has 1 '
                                 "containers, the maximum (--max-containers-per-node)")]


@pytest.mark.timeout(120)    # planning 10^9 names would exhaust memory long before this
async def test_huge_replicas_already_in_etcd_are_skipped_not_planned(cluster: Cluster) -> None:
    await cluster.add_node("h1")
    await cluster.apply(APP)
    raw, _ = await cluster.etcd.get(keyspace.desired("Service", "web"))
    assert raw is not None
    stored = json.loads(raw)
    stored["spec"]["replicas"] = 1_000_000_000      # written before the limit existed
    await cluster.etcd.put(keyspace.desired("Service", "web"), json.dumps(stored).encode())
    decided = await cluster.scheduler.run_pass()
    assert decided.empty and "web" in decided.invalid
    assert await cluster.containers() == []
    nodes = await cluster.stub.Get(controller_pb2.GetRequest(kind="nodes"))
    assert [n.name for n in nodes.nodes] == ["h1"]


SEED = APP.replace("replicas: 2", "replicas: 2\n  env: {A: '1'}\n  command: [sh, -c, x]")
MUTATIONS = ["0.0.0.0/0", "10.251.0.0/16", "1000000000", "&a [*a]", "*a", "[" * 70,
             "s" * 63, "!!int ", ": ", "- ", "\n", "{", "]", "\t", "x", "-1", "2001-02-30"]


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, len(SEED)), st.integers(0, 6),
                                st.sampled_from(MUTATIONS)), min_size=1, max_size=4))
async def test_refused_apply_leaves_etcd_unchanged(
    cluster: Cluster, edits: list[tuple[int, int, str]]
) -> None:
    if not await cluster.snapshot():
        await cluster.add_node("h1", ("10.251.0.2/24",))
    text = SEED
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    before = await cluster.snapshot()
    try:
        await cluster.apply(text)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        details = exc.details() or ""
        assert details.startswith("app.yaml: ") and "\n" not in details, details
        assert await cluster.snapshot() == before


async def test_file_whose_stored_form_cannot_fit_one_transaction_is_refused(
    cluster: Cluster,
) -> None:
    await cluster.apply(NETWORK)
    # 800 KB of text, stored as 2.4 MB of JSON escapes: over etcd's request limit.
    text = SERVICE + "  env: {NAME: '" + "é" * 400_000 + "'}\n"
    details = await cluster.refused(text)
    assert details.startswith("app.yaml: Service/web: the file's stored form is ")
    assert "more than the limit of 1048576; split it into several files" in details
