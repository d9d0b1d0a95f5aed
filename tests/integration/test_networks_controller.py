"""The controller's side of networks against a real etcd: per-node IPAM, host ports,
network_mode joiners, and what Apply refuses (one line, nothing written).

Node records and statuses are written straight into etcd, as agents would; Apply and
Get go over real gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.records import ContainerSpec, ContainerStatus, HostPrefix, NodeRecord
from controller import scheduler as scheduler_module
from controller.scheduler import Scheduler
from controller.server import RunningServer, start_server
from protos import controller_pb2, controller_pb2_grpc

pytestmark = pytest.mark.integration

H = "apiVersion: berth/v1\n"
BR = H + """kind: Network
metadata: {name: br}
spec: {driver: bridge, subnet: 10.50.0.0/24}
"""
OVL = H + """kind: Network
metadata: {name: ovl}
spec: {driver: overlay, subnet: 10.42.0.0/24}
"""


def service(name: str, replicas: int = 1, extra: str = "") -> str:
    return (H + f"kind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  replicas: {replicas}\n  image: busybox\n{extra}")


class Cluster:
    def __init__(self, etcd: Etcd3Client, stub: Any) -> None:
        self.etcd = etcd
        self.stub = stub
        self.scheduler = Scheduler(etcd)

    async def apply(self, *texts: str) -> list[tuple[str, str]]:
        resp = await self.stub.Apply(controller_pb2.ApplyRequest(
            source="app.yaml", manifest="---\n".join(texts).encode()))
        return [(o.name, o.action) for o in resp.objects]

    async def refused(self, *texts: str) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.apply(*texts)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return info.value.details() or ""

    async def add_node(self, name: str, bip: str = "172.17.0.1/16",
                       addresses: tuple[str, ...] = ("192.168.5.10/24",)) -> None:
        record = NodeRecord(name=name, address="192.168.5.10", agent_addr="127.0.0.1:1",
                            bip=bip, gwbridge="172.18.0.1/16",
                            addresses=tuple(HostPrefix(cidr=a, device="eth0")
                                            for a in addresses))
        await self.etcd.put(keyspace.node(name), record.dumps())

    async def report(self, name: str, node: str, state: str = "running") -> None:
        await self.etcd.put(keyspace.status(node, name), ContainerStatus(
            name=name, node=node, state=state).dumps())

    async def under(self, prefix: str) -> dict[str, str]:
        listing = await self.etcd.get_prefix(prefix)
        return {meta.key.removeprefix(prefix): value.decode() for value, meta in listing.items}

    async def snapshot(self) -> dict[str, bytes]:
        listing = await self.etcd.get_prefix(keyspace.ROOT)
        return {meta.key: value for value, meta in listing.items}

    async def specs(self) -> dict[str, ContainerSpec]:
        listing = await self.etcd.get_prefix(keyspace.ASSIGN)
        return {s.name: s for s in (ContainerSpec.loads(v) for v, _ in listing.items)}

    async def containers(self) -> dict[str, controller_pb2.Container]:
        resp = await self.stub.Get(controller_pb2.GetRequest(kind="containers"))
        return {c.name: c for c in resp.containers}


@pytest.fixture
async def cluster(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Cluster]:
    running: RunningServer = await start_server(etcd, "127.0.0.1:0", tmp_path)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Cluster(etcd, controller_pb2_grpc.ControllerStub(channel))
    finally:
        await running.stop(grace=None)


def _ipam_of(specs: dict[str, ContainerSpec]) -> dict[str, str]:
    """What /berth/ipam/ must hold for ``specs``: nothing more, nothing less."""
    out = {}
    for spec in specs.values():
        for att in spec.networks:
            node = f"{spec.node}/" if att.driver == "bridge" else ""
            out[f"{att.network}/{node}{att.ip}"] = spec.name
    return out


async def test_two_nodes_reuse_a_bridge_subnet_and_a_re_resolve_leaks_nothing(
    cluster: Cluster,
) -> None:
    await cluster.add_node("h1")
    await cluster.add_node("h2", bip="172.30.0.1/24")
    await cluster.apply(BR, service("web", 2, "  networks: [br]\n"), service("db", 2))
    await cluster.scheduler.run_pass()
    specs = await cluster.specs()
    addresses = {n: [(a.network, a.ip, a.gateway, a.default_route) for a in s.networks]
                 for n, s in specs.items()}
    assert addresses == {
        "web-1": [("br", "10.50.0.2", "10.50.0.1", True)],
        "web-2": [("br", "10.50.0.2", "10.50.0.1", True)],
        "db-1": [("bridge", "172.17.0.2", "172.17.0.1", True)],
        "db-2": [("bridge", "172.30.0.2", "172.30.0.1", True)]}
    assert {n: s.node for n, s in specs.items()} == {
        "db-1": "h1", "db-2": "h2", "web-1": "h1", "web-2": "h2"}
    assert await cluster.under(keyspace.IPAM) == _ipam_of(specs) == {
        "br/h1/10.50.0.2": "web-1", "br/h2/10.50.0.2": "web-2",
        "bridge/h1/172.17.0.2": "db-1", "bridge/h2/172.30.0.2": "db-2"}
    before = await cluster.snapshot()
    assert (await cluster.scheduler.run_pass()).empty
    assert await cluster.snapshot() == before

    # h2's agent now reports another bip: db-2 moves inside it, the old key goes.
    await cluster.add_node("h2", bip="172.31.0.1/24")
    await cluster.scheduler.run_pass()
    specs = await cluster.specs()
    assert (specs["db-2"].networks[0].ip, specs["db-2"].generation) == ("172.31.0.2", 2)
    assert await cluster.under(keyspace.IPAM) == _ipam_of(specs)
    assert "bridge/h2/172.30.0.2" not in await cluster.under(keyspace.IPAM)

    nets = (await cluster.stub.Get(controller_pb2.GetRequest(kind="networks"))).networks
    assert [(n.name, n.driver, n.subnet, list(n.nodes)) for n in nets] == [
        ("br", "bridge", "10.50.0.0/24", []),
        ("bridge", "bridge", "172.17.0.0/16", ["h1"]),
        ("bridge", "bridge", "172.31.0.0/24", ["h2"])]
    await cluster.apply(service("web", 0, "  networks: [br]\n"), service("db", 0))
    await cluster.scheduler.run_pass()
    assert await cluster.under(keyspace.IPAM) == {}


async def test_host_ports_never_clash_on_a_node_and_the_last_replica_waits(
    cluster: Cluster,
) -> None:
    await cluster.add_node("h1")
    await cluster.add_node("h2")
    await cluster.apply(service("web", 2, "  ports: ['8080:80']\n"),
                        service("api", 1, "  ports: ['8080:80']\n"))
    await cluster.scheduler.run_pass()
    specs = await cluster.specs()
    assert sorted((s.node, s.name) for s in specs.values()) == [("h1", "api-1"), ("h2", "web-1")]
    ctrs = await cluster.containers()
    assert (ctrs["web-2"].state, ctrs["web-2"].error) == (
        "pending", "no Ready node can take it: node h1: host port 8080/tcp is published by "
                   "api-1; node h2: host port 8080/tcp is published by web-1")
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol)
            for p in ctrs["api-1"].ports] == [("0.0.0.0", 8080, 80, "tcp")]


async def test_a_random_port_is_stored_shown_and_kept_across_an_update(
    cluster: Cluster,
) -> None:
    await cluster.add_node("h1")
    await cluster.apply(service("web", 2, "  ports: ['80', '127.0.0.1::90/udp']\n"))
    await cluster.scheduler.run_pass()
    ports = {n: [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in s.ports]
             for n, s in (await cluster.specs()).items()}
    assert ports == {"web-1": [("", 32768, 80, "tcp"), ("127.0.0.1", 32768, 90, "udp")],
                     "web-2": [("", 32769, 80, "tcp"), ("127.0.0.1", 32769, 90, "udp")]}
    await cluster.apply(service("web", 2, "  ports: ['80', '127.0.0.1::90/udp']\n"
                                          "  env: {A: b}\n"))
    await cluster.scheduler.run_pass()
    specs = await cluster.specs()
    assert [s.generation for s in specs.values()] == [2, 2]
    assert [s.ports[0].host_port for s in specs.values()] == [32768, 32769]
    ctrs = await cluster.containers()
    assert [(p.host_ip, p.host_port) for p in ctrs["web-2"].ports] == [
        ("0.0.0.0", 32769), ("127.0.0.1", 32769)]


async def test_a_joiner_waits_for_its_target_to_run_then_goes_to_its_node(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No periodic pass: only the status watch can place the joiner.
    monkeypatch.setattr(scheduler_module, "RESYNC_INTERVAL", 3600.0)
    await cluster.add_node("h1")
    await cluster.add_node("h2")
    await cluster.apply(service("db", 2, "  placement: {node: h2}\n"),
                        service("side", 2, "  network_mode: service:db\n"))
    task = asyncio.create_task(cluster.scheduler.run())
    try:
        await _until(cluster, lambda s: {"db-1", "db-2"} <= set(s))
        ctrs = await cluster.containers()
        assert (ctrs["side-1"].state, ctrs["side-1"].error) == (
            "pending", 'waiting for its network_mode target "db-1" to run (it is pending)')
        await cluster.report("db-1", "h2")
        specs = await _until(cluster, lambda s: "side-1" in s)
        assert (specs["side-1"].node, specs["side-1"].network_mode) == ("h2", "container:db-1")
        assert specs["side-1"].networks == ()
        ctrs = await cluster.containers()
        assert (ctrs["side-2"].state, ctrs["side-2"].error) == (
            "pending", 'waiting for its network_mode target "db-2" to run (it is pending)')
        assert ctrs["side-1"].network_mode == "container:db-1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(cluster: Cluster, check: Any, within: float = 60.0) -> dict[str, ContainerSpec]:
    """Poll the assignments until ``check`` holds (a guard against a hang, not a timing)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        specs = await cluster.specs()
        if check(specs):
            return specs
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"assignments never matched; last: {sorted(specs)}")
        await asyncio.sleep(0.05)


MACVLAN = H + """kind: Network
metadata: {name: lan}
spec: {driver: macvlan, subnet: 192.168.5.0/24, options: {parent: eth0}}
"""
SECRET = H + """kind: Network
metadata: {name: secret}
spec: {driver: bridge, subnet: 10.60.0.0/24, internal: true}
"""


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ((BR.replace("name: br", "name: br2").replace("10.50.0.0/24", "10.50.0.0/16"),),
         "app.yaml: Network/br2: spec.subnet: 10.50.0.0/16 overlaps bridge network br "
         "(10.50.0.0/24); bridge networks share every node's routing table, so they may not "
         "overlap"),
        ((BR.replace("name: br", "name: br2").replace("10.50.0.0/24", "172.17.5.0/24"),),
         "app.yaml: Network/br2: spec.subnet: 172.17.5.0/24 overlaps node h1's default "
         "network bridge 172.17.0.0/16; pick a range that no node uses"),
        ((service("side", 1, "  network_mode: container:web-2\n"),),
         'app.yaml: Service/side: spec.network_mode: container "web-2" does not exist: no '
         "service has that replica"),
        ((service("side", 1, "  network_mode: service:nope\n"),),
         'app.yaml: Service/side: spec.network_mode: service "nope" does not exist (define it '
         "in this file or apply it first)"),
        ((service("web", 2, "  network_mode: container:web-1\n"),),
         "app.yaml: Service/web: spec.network_mode: a service cannot join the network "
         "namespace of its own replicas"),
        ((service("tail", 1, "  network_mode: service:side\n"),
          service("side", 1, "  network_mode: service:web\n")),
         "app.yaml: Service/tail: spec.network_mode: side itself joins the network namespace "
         "of service:web; join that one directly"),
        ((service("side", 1, "  network_mode: service:web\n"),
          service("tail", 1, "  network_mode: service:side\n")),
         "app.yaml: Service/side: spec.network_mode: service tail joins this service's "
         "network namespace, so this one cannot join another's"),
        ((OVL.replace("10.42.0.0/24", "10.42.0.0/29"), service("api", 6, "  networks: [ovl]\n")),
         "app.yaml: Service/api: spec.replicas: network ovl has room for 5 containers in "
         "10.42.0.0/29, but its services need 6 (api 6); use a larger subnet or ip_range, or "
         "fewer replicas"),
        ((BR.replace("name: br", "name: small").replace("10.50.0.0/24", "10.51.0.0/29"),
          service("api", 11, "  networks: [small]\n")),
         "app.yaml: Service/api: spec.replicas: network small has room for 5 containers in "
         "10.51.0.0/29 per node, on 1 Ready node, but its services need 11 (api 11); use a "
         "larger subnet or ip_range, or fewer replicas"),
        ((SECRET, service("api", 1, "  networks: [secret]\n  ports: ['8080:80']\n")),
         "app.yaml: Service/api: spec.ports: published ports need a network that is not "
         "internal to land on, and every network of this service is internal (secret); add a "
         "bridge network, or an overlay, that is not internal"),
        ((MACVLAN.replace("name: lan", "name: alan"),
          service("api", 1, "  networks: [alan, br]\n  ports: ['8080:80']\n")),
         "app.yaml: Service/api: spec.ports: published ports land on the network that carries "
         "the default route, and that is macvlan network alan; ports are published on bridge "
         "networks only (an overlay's go through the node's gateway bridge): add a bridge "
         "network that sorts before it, or publish nothing"),
        ((BR.replace("10.50.0.0/24}", "10.50.0.0/24, options: {icc: false}}"),),
         "app.yaml: Network/br: spec.options: cannot change the options of a network in use "
         "({icc: true} -> {icc: false}); service web uses it: remove it from the services "
         "that use it first"),
        ((BR.replace("10.50.0.0/24}", "10.50.0.0/24, internal: true}"),),
         "app.yaml: Network/br: spec.internal: cannot change the internal of a network in use "
         "(false -> true); service web uses it: remove it from the services that use it "
         "first"),
        ((BR.replace("10.50.0.0/24}", "10.50.0.0/24, mtu: 1400}"),),
         "app.yaml: Network/br: spec.mtu: cannot change the mtu of a network in use (unset -> "
         "1400); service web uses it: remove it from the services that use it first"),
        ((BR.replace("bridge, subnet", "overlay, subnet"),),
         "app.yaml: Network/br: spec.driver: cannot change a network's driver (bridge -> "
         "overlay); delete the network and apply it again"),
        ((MACVLAN.replace("{parent: eth0}", "{parent: eth0}, aux_addresses: {gw: 192.168.5.9}"),
          service("api", 1, "  networks: {lan: {ip: 192.168.5.9}}\n")),
         "app.yaml: Service/api: spec.networks.lan.ip: 192.168.5.9 is reserved by network "
         "lan's aux_addresses (gw)"),
    ],
    ids=["bridges-overlap", "bridge-overlaps-bip", "no-such-container", "no-such-service",
         "joins-itself", "chain-to-a-joiner", "chain-from-a-joiner", "overlay-too-small",
         "bridge-too-small-for-the-nodes",
         "ports-on-internal-only", "ports-on-macvlan-route", "in-use-options",
         "in-use-internal", "in-use-mtu", "driver-change", "static-ip-is-aux"],
)
async def test_apply_refuses_in_one_line_and_writes_nothing(
    cluster: Cluster, texts: tuple[str, ...], expected: str,
) -> None:
    await cluster.add_node("h1")
    await cluster.apply(BR, service("web", 1, "  networks: [br]\n"))
    before = await cluster.snapshot()
    assert await cluster.refused(*texts) == expected
    assert await cluster.snapshot() == before


async def test_what_apply_accepts_around_those_refusals(cluster: Cluster) -> None:
    await cluster.add_node("h1")
    await cluster.add_node("h2")
    # A macvlan network shares the nodes' LAN; a bridge /29 has 5 per node, 2 nodes.
    assert await cluster.apply(MACVLAN, BR.replace("10.50.0.0/24", "10.50.0.0/29"),
                               service("web", 10, "  networks: [br]\n")) == [
        ("lan", "created"), ("br", "created"), ("web", "created")]
    # An unused network may change its options; an equivalent spelling is unchanged.
    assert await cluster.apply(MACVLAN.replace("{parent: eth0}", "{parent: eth0, mode: vepa}")
                               ) == [("lan", "configured")]
    assert await cluster.apply(MACVLAN.replace("{parent: eth0}", "{mode: vepa, parent: eth0}")
                               ) == [("lan", "unchanged")]
    # Once a node is gone, the file is over capacity: scaling down still passes.
    await cluster.etcd.delete(keyspace.node("h2"))
    assert await cluster.apply(service("web", 9, "  networks: [br]\n")) == [
        ("web", "configured")]
    assert "but its services need 10" in await cluster.refused(
        service("web", 10, "  networks: [br]\n"))
    # A sidecar of an existing replica, and the bridge network_mode spelled out.
    assert await cluster.apply(service("side", 1, "  network_mode: container:web-9\n"),
                               service("web", 9, "  networks: [br]\n"),
                               service("db", 1, "  network_mode: bridge\n")) == [
        ("side", "created"), ("web", "unchanged"), ("db", "created")]
    assert await cluster.apply(service("db", 1)) == [("db", "unchanged")]
