"""IPAM and VNI allocation against a real etcd: the scheduler's addresses and their release.

Node records and endpoints are written straight into etcd, as agents would, so the
controller's side can be checked without agents. Get goes over real gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.netaddr import mac_from_ip
from berth.records import ContainerSpec, Endpoint, NodeRecord
from controller import store
from controller.scheduler import Scheduler
from controller.server import RunningServer, start_server
from protos import controller_pb2, controller_pb2_grpc

pytestmark = pytest.mark.integration

NET = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet}
spec: {driver: overlay, subnet: 10.42.0.0/24}
"""
WEB = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 3
  image: busybox:latest
  networks: [appnet]
"""
# The overlay is not internal, so each replica also joins its node's gateway bridge.
GW_KEY = "berth-gwbridge/host1/172.18.0.2"


class Cluster:
    def __init__(self, etcd: Etcd3Client, stub: Any) -> None:
        self.etcd = etcd
        self.stub = stub
        self.scheduler = Scheduler(etcd)

    async def apply(self, text: str) -> None:
        await store.apply(self.etcd, "app.yaml", text)

    async def add_node(self, name: str) -> None:
        record = NodeRecord(name=name, address="192.0.2.10", agent_addr="127.0.0.1:1",
                            bip="172.17.0.1/16", gwbridge="172.18.0.1/16")
        await self.etcd.put(keyspace.node(name), record.dumps())

    async def under(self, prefix: str) -> dict[str, str]:
        listing = await self.etcd.get_prefix(prefix)
        return {meta.key.removeprefix(prefix): value.decode() for value, meta in listing.items}

    async def specs(self) -> dict[str, ContainerSpec]:
        listing = await self.etcd.get_prefix(keyspace.ASSIGN)
        return {s.name: s for s in (ContainerSpec.loads(v) for v, _ in listing.items)}

    async def revision(self) -> int:
        return (await self.etcd.get_prefix(keyspace.ROOT)).revision

    async def get(self, kind: str) -> controller_pb2.GetResponse:
        resp: controller_pb2.GetResponse = await self.stub.Get(
            controller_pb2.GetRequest(kind=kind))
        return resp


@pytest.fixture
async def cluster(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Cluster]:
    running: RunningServer = await start_server(etcd, "127.0.0.1:0", tmp_path)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = controller_pb2_grpc.ControllerStub(channel)
            yield Cluster(etcd, stub)
    finally:
        await running.stop(grace=None)


def _addresses(specs: dict[str, ContainerSpec], network: str = "appnet") -> dict[str, str]:
    """ip -> container, as the ipam keys should say."""
    return {att.ip: spec.name for spec in specs.values() for att in spec.networks
            if att.network == network}


async def test_replicas_get_distinct_addresses_released_on_scale_down_and_delete(
    cluster: Cluster,
) -> None:
    await cluster.add_node("host1")
    await cluster.add_node("host2")
    await cluster.apply(NET + "---\n" + WEB)
    assert await cluster.under(keyspace.VNI) == {"4096": "appnet"}
    assert await cluster.under(keyspace.NETSTATE) == {"appnet": "4096"}
    await cluster.scheduler.run_pass()
    specs = await cluster.specs()
    assert sorted(specs) == ["web-1", "web-2", "web-3"]
    atts = [spec.networks[0] for spec in specs.values()]
    assert len({a.ip for a in atts}) == 3 and "10.42.0.1" not in {a.ip for a in atts}
    assert all((a.prefixlen, a.gateway, a.mac, a.vni) == (24, "10.42.0.1", mac_from_ip(a.ip), 4096)
               for a in atts)
    assert await cluster.under(keyspace.ipam_prefix("appnet")) == _addresses(specs)

    before = await cluster.revision()
    assert (await cluster.scheduler.run_pass()).empty
    assert await cluster.revision() == before, "a second pass must not write anything"
    assert await cluster.specs() == specs

    nets = (await cluster.get("networks")).networks
    assert [(n.name, n.vni, n.gateway, list(n.nodes)) for n in nets] == [
        ("appnet", 4096, "10.42.0.1", []), ("bridge", 0, "172.17.0.1", ["host1", "host2"])]
    ctrs = (await cluster.get("containers")).containers
    assert {c.name: (c.networks["appnet"].ip, c.networks["appnet"].mac) for c in ctrs} == {
        s.name: (s.networks[0].ip, s.networks[0].mac) for s in specs.values()}

    # web-2's node died with its endpoint still published: the controller withdraws it.
    for name in ("web-2", "web-3"):
        spec = specs[name]
        await cluster.etcd.put(keyspace.endpoint(spec.node, "appnet", name), Endpoint(
            network="appnet", container=name, service="web", node=spec.node,
            ip=spec.networks[0].ip, mac=spec.networks[0].mac, host_ip="192.0.2.10").dumps())
    await cluster.apply(WEB.replace("replicas: 3", "replicas: 1"))
    await cluster.scheduler.run_pass()
    assert await cluster.under(keyspace.ipam_prefix("appnet")) == {
        specs["web-1"].networks[0].ip: "web-1"}
    assert await cluster.under(keyspace.ENDPOINTS) == {}

    await store.delete(cluster.etcd, [("Service", "web")], must_exist=True)
    await cluster.scheduler.run_pass()
    assert await cluster.under(keyspace.IPAM) == {}
    await store.delete(cluster.etcd, [("Network", "appnet")], must_exist=True)
    assert await cluster.under(keyspace.VNI) == {}
    assert await cluster.under(keyspace.NETSTATE) == {}


async def test_networks_get_distinct_vnis_and_a_freed_one_is_reused(cluster: Cluster) -> None:
    nets = [NET.replace("appnet", f"net{i}").replace("10.42.", f"10.{50 + i}.")
            for i in range(3)]
    # Two "controllers" applying at once: the VNI guards make one retry.
    await asyncio.gather(cluster.apply(nets[0]), cluster.apply(nets[1]))
    await cluster.apply(nets[2])
    vnis = await cluster.under(keyspace.NETSTATE)
    assert sorted(vnis) == ["net0", "net1", "net2"]
    assert sorted(vnis.values()) == ["4096", "4097", "4098"]
    assert await cluster.under(keyspace.VNI) == {v: n for n, v in vnis.items()}
    await store.delete(cluster.etcd, [("Network", "net1")], must_exist=True)
    await cluster.apply(NET)
    assert (await cluster.under(keyspace.NETSTATE))["appnet"] == vnis["net1"]
    before = await cluster.revision()
    await cluster.apply(NET)        # unchanged: no second VNI, no write
    assert await cluster.revision() == before


async def test_missing_vni_is_repaired_and_orphans_collected(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    await cluster.apply(NET + "---\n" + WEB.replace("replicas: 3", "replicas: 1"))
    await cluster.etcd.delete_prefix(keyspace.NETSTATE)     # as if written by an old controller
    await cluster.etcd.put(keyspace.vni(5000), "gone")
    await cluster.etcd.put(keyspace.ipam("appnet", "10.42.0.77"), "ghost-1")
    await cluster.etcd.put(keyspace.endpoint("host1", "appnet", "ghost-1"), b"{}")
    # Keys of the layout before per-node keys, left by an older berth: collected too.
    await cluster.etcd.put(keyspace.ENDPOINTS + "appnet/ghost-2", b"{}")
    await cluster.etcd.put(keyspace.STATUS + "ghost-2", b"{}")
    await cluster.scheduler.run_pass()
    assert await cluster.under(keyspace.NETSTATE) == {"appnet": "4096"}
    assert await cluster.under(keyspace.VNI) == {"4096": "appnet"}
    spec = (await cluster.specs())["web-1"]
    assert (spec.networks[0].ip, spec.networks[0].vni) == ("10.42.0.2", 4096)
    assert await cluster.under(keyspace.IPAM) == {"appnet/10.42.0.2": "web-1",
                                                  GW_KEY: "web-1"}
    assert await cluster.under(keyspace.ENDPOINTS) == {}
    assert await cluster.under(keyspace.STATUS) == {}


async def test_leftover_address_is_reused_and_lost_one_reclaimed(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    await cluster.apply(NET)
    await cluster.etcd.put(keyspace.ipam("appnet", "10.42.0.7"), "web-1")   # a crash leftover
    await cluster.apply(WEB.replace("replicas: 3", "replicas: 1"))
    await cluster.scheduler.run_pass()
    assert (await cluster.specs())["web-1"].networks[0].ip == "10.42.0.7"
    await cluster.etcd.delete(keyspace.ipam("appnet", "10.42.0.7"))        # lost by hand
    await cluster.scheduler.run_pass()
    assert await cluster.under(keyspace.IPAM) == {"appnet/10.42.0.7": "web-1",
                                                  GW_KEY: "web-1"}
    assert (await cluster.specs())["web-1"].generation == 1


async def test_static_ip_honoured_and_a_taken_one_is_a_pending_reason(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    static = WEB.replace("replicas: 3", "replicas: 1").replace(
        "networks: [appnet]", "networks: {appnet: {ip: 10.42.0.9}}")
    await cluster.apply(NET + "---\n" + static)
    await cluster.scheduler.run_pass()
    await cluster.apply(static.replace("name: web", "name: db"))
    await cluster.scheduler.run_pass()
    specs = await cluster.specs()
    assert sorted(specs) == ["web-1"] and specs["web-1"].networks[0].ip == "10.42.0.9"
    ctrs = (await cluster.get("containers")).containers
    assert [(c.name, c.state, c.error) for c in ctrs] == [
        ("db-1", "pending", "network appnet: ip 10.42.0.9 is already used by web-1"),
        ("web-1", "pending", "")]
    assert cluster.scheduler.last_plan is not None
    assert cluster.scheduler.last_plan.pending == {
        "db-1": "network appnet: ip 10.42.0.9 is already used by web-1"}


async def test_update_that_cannot_get_an_address_says_why_in_get(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    web = WEB.replace("replicas: 3", "replicas: 1").replace(
        "networks: [appnet]", "networks: {appnet: {ip: 10.42.0.9}}")
    db = WEB.replace("replicas: 3", "replicas: 1").replace("name: web", "name: db")
    await cluster.apply(NET + "---\n" + web + "---\n" + db)
    await cluster.scheduler.run_pass()
    before = (await cluster.specs())["db-1"]
    # db now asks for web-1's address: the update cannot be written.
    await cluster.apply(db.replace("networks: [appnet]", "networks: {appnet: {ip: 10.42.0.9}}"))
    await cluster.scheduler.run_pass()
    assert (await cluster.specs())["db-1"] == before     # the old spec stays
    ctrs = {c.name: c for c in (await cluster.get("containers")).containers}
    assert (ctrs["db-1"].error, ctrs["db-1"].generation) == (
        "cannot roll out generation 2: network appnet: ip 10.42.0.9 is already used by web-1",
        2)
    assert (ctrs["web-1"].error, ctrs["web-1"].generation) == ("", 1)


class RacingEtcd(Etcd3Client):
    """A real client that lets a rival claim an address just before our first claim lands."""

    rival_ip = ""

    async def transaction(self, compare: Any, success: Any, failure: Any = ()) -> Any:
        if self.rival_ip and any(getattr(op, "key", "").startswith(keyspace.IPAM)
                                 for op in success):
            ip, self.rival_ip = self.rival_ip, ""
            await self.put(keyspace.ipam("appnet", ip), "rival-1")
        return await super().transaction(compare, success, failure)


async def test_a_claim_lost_to_a_rival_takes_the_next_address(
    etcd_endpoint: str, cluster: Cluster
) -> None:
    await cluster.add_node("host1")
    await cluster.apply(NET + "---\n" + WEB.replace("replicas: 3", "replicas: 1"))
    racing = RacingEtcd(etcd_endpoint)
    async with racing:
        racing.rival_ip = "10.42.0.2"
        decided = await Scheduler(racing).run_pass()
    assert [c.spec.name for c in decided.creates] == ["web-1"]
    assert (await cluster.specs())["web-1"].networks[0].ip == "10.42.0.3"
    # The rival has no assignment, so the same pass collected its address.
    assert await cluster.under(keyspace.IPAM) == {"appnet/10.42.0.3": "web-1",
                                                  GW_KEY: "web-1"}
