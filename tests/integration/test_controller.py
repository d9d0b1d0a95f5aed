"""The controller against a real etcd: Apply/Get/Delete over real gRPC, and the scheduler.

Node records are written straight into etcd (as an agent would) so the scheduler
can be checked without agents. Exec/Logs/ImageLoad reach a small in-test Agent
gRPC server on localhost that records what it was sent.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console

from berth import keyspace
from berth.etcd import Etcd3Client, Listing
from berth.records import ContainerSpec, ContainerStatus, ImageRecord, NodeRecord
from clusterctl.client import CtlError
from clusterctl.output import rows
from clusterctl.waiting import wait_for_services
from controller import store
from controller.errors import InUseError
from controller.scheduler import Scheduler
from controller.server import RunningServer, start_server
from protos import agent_pb2_grpc, common_pb2, controller_pb2, controller_pb2_grpc
from tests.metricsread import scrape_until

pytestmark = pytest.mark.integration

APP = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet}
spec: {driver: overlay, subnet: 10.42.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  image: busybox:latest
  command: [httpd, -f, -p, "80"]
  networks: [appnet]
"""


class Cluster:
    def __init__(self, etcd: Etcd3Client, stub: Any, scheduler: Scheduler) -> None:
        self.etcd = etcd
        self.stub = stub
        self.scheduler = scheduler

    async def apply(self, text: str, source: str = "app.yaml") -> list[tuple[str, str, str]]:
        resp = await self.stub.Apply(controller_pb2.ApplyRequest(source=source,
                                                                 manifest=text.encode()))
        return [(o.kind, o.name, o.action) for o in resp.objects]

    async def snapshot(self) -> dict[str, bytes]:
        listing = await self.etcd.get_prefix(keyspace.ROOT)
        return {meta.key: value for value, meta in listing.items}

    async def add_node(self, name: str, agent_addr: str = "127.0.0.1:1") -> None:
        record = NodeRecord(name=name, address="192.0.2.10", agent_addr=agent_addr,
                            bip="172.17.0.1/16", gwbridge="172.18.0.1/16")
        await self.etcd.put(keyspace.node(name), record.dumps())

    async def placements(self) -> dict[str, str]:
        listing = await self.etcd.get_prefix(keyspace.ASSIGN)
        return {ContainerSpec.loads(v).name: ContainerSpec.loads(v).node for v, _ in listing.items}


@pytest.fixture
async def cluster(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Cluster]:
    scheduler = Scheduler(etcd)
    running: RunningServer = await start_server(etcd, "127.0.0.1:0", tmp_path, scheduler)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = controller_pb2_grpc.ControllerStub(channel)
            yield Cluster(etcd, stub, scheduler)
    finally:
        await running.stop(grace=None)


async def _rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    return info.value


async def test_apply_writes_desired_and_reapply_is_unchanged(cluster: Cluster) -> None:
    assert await cluster.apply(APP) == [("Network", "appnet", "created"),
                                        ("Service", "web", "created")]
    stored = await cluster.snapshot()
    web = json.loads(stored["/berth/desired/service/web"])
    assert web["spec"]["replicas"] == 2 and web["spec"]["networks"] == {
        "appnet": {"aliases": [], "ip": None}}
    assert json.loads(stored["/berth/desired/network/appnet"])["spec"]["gateway"] == "10.42.0.1"
    assert await cluster.apply(APP) == [("Network", "appnet", "unchanged"),
                                        ("Service", "web", "unchanged")]
    assert await cluster.snapshot() == stored
    assert await cluster.apply(APP.replace("replicas: 2", "replicas: 3")) == [
        ("Network", "appnet", "unchanged"), ("Service", "web", "configured")]


async def test_concurrent_applies_all_land_one_at_a_time(cluster: Cluster) -> None:
    await cluster.apply(APP)
    versions = [APP.replace("replicas: 2", f"replicas: {n}") for n in range(3, 9)]
    results = await asyncio.gather(*(cluster.apply(text) for text in versions))
    assert all(r[1][2] in ("configured", "unchanged") for r in results)
    raw, meta = await cluster.etcd.get(keyspace.desired("Service", "web"))
    assert raw is not None and meta is not None
    assert json.loads(raw)["spec"]["replicas"] in range(3, 9)
    assert meta.version == 1 + sum(r[1][2] == "configured" for r in results)


async def test_dry_run_writes_nothing(cluster: Cluster) -> None:
    before = await cluster.snapshot()
    resp = await cluster.stub.Apply(controller_pb2.ApplyRequest(
        source="app.yaml", manifest=APP.encode(), dry_run=True))
    assert [o.action for o in resp.objects] == ["created", "created"]
    assert await cluster.snapshot() == before


@pytest.mark.parametrize(
    ("text", "details"),
    [
        (APP.replace("replicas: 2", "replicas: 2\n  volumes: ['/a:/a']"),
         "app.yaml: Service/web: spec.volumes: not supported yet"),
        (APP.replace("kind: Service", "kind: Servce"),
         'app.yaml: document 2: kind: unknown kind "Servce" (expected Network or Service)'),
        (APP.split("---\n")[1],
         'app.yaml: Service/web: spec.networks.appnet: network "appnet" does not exist '
         "(define it in this file or apply it first)"),
        (APP.replace("networks: [appnet]", "networks: {appnet: {ip: 10.42.1.5}}"),
         "app.yaml: Service/web: spec.networks.appnet.ip: a static ip needs replicas: 1 (got 2)"),
        (APP.replace("replicas: 2", "replicas: 1").replace(
            "networks: [appnet]", "networks: {appnet: {ip: 10.42.0.1}}"),
         "app.yaml: Service/web: spec.networks.appnet.ip: 10.42.0.1 is not a free host "
         "address of 10.42.0.0/24 (network appnet)"),
        (APP.replace("networks: [appnet]", "networks: [appnet, othernet]"),
         "app.yaml: Service/web: spec.networks.othernet: subnet 10.42.0.0/24 overlaps network "
         "appnet (10.42.0.0/24); a container cannot join both"),
    ],
    ids=["unsupported-field", "unknown-kind", "missing-network", "static-ip-many-replicas",
         "static-ip-is-the-gateway",
         "overlapping-networks"],
)
async def test_bad_file_is_invalid_argument_and_writes_nothing(
    cluster: Cluster, text: str, details: str
) -> None:
    await cluster.apply(APP.split("---\n")[0].replace("appnet", "othernet"))
    before = await cluster.snapshot()
    err = await _rpc_error(cluster.stub.Apply(controller_pb2.ApplyRequest(
        source="app.yaml", manifest=text.encode())))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, details)
    assert await cluster.snapshot() == before


async def test_network_subnet_cannot_change(cluster: Cluster) -> None:
    await cluster.apply(APP)
    err = await _rpc_error(cluster.stub.Apply(controller_pb2.ApplyRequest(
        source="app.yaml", manifest=APP.replace("10.42.0.0/24", "10.43.0.0/24").encode())))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.subnet: cannot change a network's subnet" in (err.details() or "")


async def test_scheduler_spreads_replicas_one_per_node(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    await cluster.add_node("host2")
    await cluster.apply(APP)
    await cluster.scheduler.run_pass()
    assert await cluster.placements() == {"web-1": "host1", "web-2": "host2"}
    raw, _ = await cluster.etcd.get(keyspace.assign("host2", "web-2"))
    assert raw is not None
    spec = ContainerSpec.loads(raw)
    assert (spec.service, spec.image, spec.command, spec.generation) == (
        "web", "busybox:latest", ("httpd", "-f", "-p", "80"), 1)
    # An overlay that is not internal gives no default route: the gateway bridge does.
    assert [(a.network, a.driver, a.default_route) for a in spec.networks] == [
        ("appnet", "overlay", False), ("berth-gwbridge", "bridge", True)]
    before = await cluster.snapshot()
    assert (await cluster.scheduler.run_pass()).empty
    assert await cluster.snapshot() == before


async def test_placement_node_honoured_and_pending_reason_shown(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    await cluster.add_node("host2")
    pinned = APP.replace("networks: [appnet]", "networks: [appnet]\n  placement: {node: host2}")
    await cluster.apply(pinned)
    await cluster.scheduler.run_pass()
    assert await cluster.placements() == {"web-1": "host2", "web-2": "host2"}
    await cluster.apply(pinned.replace("node: host2", "node: host9"))
    await cluster.scheduler.run_pass()
    assert await cluster.placements() == {}
    resp = await cluster.stub.Get(controller_pb2.GetRequest(kind="containers"))
    assert [(c.name, c.state, c.error) for c in resp.containers] == [
        ("web-1", "pending", 'placement.node "host9" is not a Ready node'),
        ("web-2", "pending", 'placement.node "host9" is not a Ready node')]


async def test_spec_change_bumps_generation(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    await cluster.apply(APP)
    await cluster.scheduler.run_pass()
    await cluster.apply(APP.replace("busybox:latest", "busybox:1.36"))
    await cluster.scheduler.run_pass()
    raw, _ = await cluster.etcd.get(keyspace.assign("host1", "web-1"))
    assert raw is not None
    assert (ContainerSpec.loads(raw).image, ContainerSpec.loads(raw).generation) == (
        "busybox:1.36", 2)


async def test_delete_removes_desired_and_assignments(cluster: Cluster) -> None:
    await cluster.add_node("host1")
    await cluster.apply(APP)
    await cluster.scheduler.run_pass()
    err = await _rpc_error(cluster.stub.Delete(controller_pb2.DeleteRequest(
        kind="network", name="appnet")))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'network "appnet" is used by service "web"; delete or change that service first')
    resp = await cluster.stub.Delete(controller_pb2.DeleteRequest(
        source="app.yaml", manifest=APP.encode()))
    assert [(o.kind, o.name, o.action) for o in resp.objects] == [
        ("Network", "appnet", "deleted"), ("Service", "web", "deleted")]
    await cluster.scheduler.run_pass()
    remaining = await cluster.snapshot()
    assert [k for k in remaining if not k.startswith(keyspace.NODES)] == []
    err = await _rpc_error(cluster.stub.Delete(controller_pb2.DeleteRequest(
        kind="service", name="web")))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, 'service "web" not found')


async def test_scheduler_loop_reacts_to_apply_and_new_nodes(cluster: Cluster) -> None:
    task = asyncio.create_task(cluster.scheduler.run())
    try:
        await cluster.apply(APP)
        await asyncio.sleep(0.2)
        ctrs = (await cluster.stub.Get(controller_pb2.GetRequest(kind="containers"),
                                       timeout=10)).containers
        assert [(c.name, c.state, c.error) for c in ctrs] == [
            ("web-1", "pending", "no Ready node"), ("web-2", "pending", "no Ready node")]
        await cluster.add_node("host1")
        await _until(lambda p: p == {"web-1": "host1", "web-2": "host1"}, cluster)
        await cluster.apply(APP.replace("replicas: 2", "replicas: 1"))
        await _until(lambda p: p == {"web-1": "host1"}, cluster)
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=10)
        assert task.cancelled()


@pytest.mark.parametrize("steps", range(4))
async def test_scheduler_loop_stops_when_cancelled_as_it_wakes(
    cluster: Cluster, steps: int
) -> None:
    """The hang this file used to have: a cancel that lands while a watch event wakes the
    loop was swallowed by asyncio.wait_for (Python 3.11), so run() never returned."""
    task = asyncio.create_task(cluster.scheduler.run())
    try:
        # Once a pass is counted, run() goes straight (no await between) to its wait.
        deadline = asyncio.get_running_loop().time() + 10
        while cluster.scheduler.passes == 0:
            assert asyncio.get_running_loop().time() < deadline, "no scheduler pass ran"
            await asyncio.sleep(0.01)
        cluster.scheduler.wake()
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the scheduler loop swallowed its cancellation"
        assert task.cancelled()
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=10)


async def _until(check: Any, cluster: Cluster, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        placements = await cluster.placements()
        if check(placements):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"placements never matched; last: {placements}")
        await asyncio.sleep(0.05)


async def _report(cluster: Cluster, name: str, state: str, generation: int,
                  exit_code: int | None = None) -> None:
    """Write the status an agent on host1 would write for ``name``."""
    status = ContainerStatus(name=name, node="host1", state=state, generation=generation,
                             exit_code=exit_code)
    await cluster.etcd.put(keyspace.status("host1", name), status.dumps())


async def _wait(cluster: Cluster, within: float) -> str:
    """Run ``apply --wait``'s loop for service web; '' on success, else the error."""
    err = Console(file=io.StringIO())
    try:
        await wait_for_services(cluster.stub, ["web"], within, err)
    except CtlError as exc:
        return str(exc)
    return ""


async def test_apply_wait_waits_for_the_new_generation_not_the_old_container(
    cluster: Cluster
) -> None:
    await cluster.add_node("host1")
    one = APP.replace("replicas: 2", "replicas: 1")
    await cluster.apply(one)
    await cluster.scheduler.run_pass()
    await _report(cluster, "web-1", "running", generation=1)
    assert await _wait(cluster, 5) == ""
    # A spec change: the old container still runs; the scheduler has not even looked yet.
    await cluster.apply(one.replace('"80"]', '"81"]'))
    assert "web 0/1 running" in await _wait(cluster, 0.5)
    await cluster.scheduler.run_pass()
    ctrs = (await cluster.stub.Get(controller_pb2.GetRequest(kind="containers"))).containers
    assert [(c.name, c.state, c.generation, c.observed_generation) for c in ctrs] == [
        ("web-1", "running", 2, 1)]
    row = rows("containers", controller_pb2.GetResponse(containers=ctrs))[0]
    assert (row["generation"], row["observed_generation"]) == (2, 1)
    assert "web 0/1 running" in await _wait(cluster, 0.5)
    # The new generation fails: keep waiting and say why; never report success.
    await _report(cluster, "web-1", "exited", generation=2, exit_code=3)
    assert await _wait(cluster, 0.5) == (
        "timed out after 0s: web 0/1 running; last error: web-1: exited: exited with code 3")
    await _report(cluster, "web-1", "running", generation=2)
    assert await _wait(cluster, 5) == ""


class RacingEtcd(Etcd3Client):
    """A real client that lets a rival Apply land right after Delete lists the services."""

    rival = ""

    async def get_prefix(self, prefix: str) -> Listing:
        listing = await super().get_prefix(prefix)
        if self.rival and prefix == keyspace.desired_prefix("Service"):
            manifest, self.rival = self.rival, ""
            await store.apply(self, "rival.yaml", manifest)
        return listing


async def test_network_delete_loses_to_a_service_applied_concurrently(
    etcd_endpoint: str, cluster: Cluster
) -> None:
    await cluster.apply(APP.split("---")[0])
    racing = RacingEtcd(etcd_endpoint)
    async with racing:
        racing.rival = APP.split("---")[1].replace("name: web", "name: late")
        with pytest.raises(InUseError) as info:
            await store.delete(racing, [("Network", "appnet")], must_exist=True)
    assert str(info.value) == ('network "appnet" is used by service "late"; '
                               "delete or change that service first")
    snapshot = await cluster.snapshot()
    assert {keyspace.desired("Network", "appnet"), keyspace.desired("Service", "late")} <= set(
        snapshot)


async def test_get_lists_nodes_services_networks(cluster: Cluster) -> None:
    await cluster.add_node("host1", agent_addr="127.0.0.1:7701")
    await cluster.apply(APP)
    await cluster.scheduler.run_pass()
    await cluster.etcd.delete(keyspace.node("host1"))           # the agent's lease expired
    await cluster.add_node("host2")
    nodes = (await cluster.stub.Get(controller_pb2.GetRequest(kind="nodes"))).nodes
    assert [(n.name, n.status, n.containers) for n in nodes] == [
        ("host1", "NotReady", 2), ("host2", "Ready", 0)]
    services = (await cluster.stub.Get(controller_pb2.GetRequest(kind="services"))).services
    assert [(s.name, s.image, s.replicas, s.running) for s in services] == [
        ("web", "busybox:latest", 2, 0)]
    nets = (await cluster.stub.Get(controller_pb2.GetRequest(kind="networks",
                                                             name="appnet"))).networks
    assert [(n.name, n.driver, n.subnet, n.gateway) for n in nets] == [
        ("appnet", "overlay", "10.42.0.0/24", "10.42.0.1")]
    ctrs = (await cluster.stub.Get(controller_pb2.GetRequest(kind="containers"))).containers
    assert [(c.name, c.node, c.state) for c in ctrs] == [("web-1", "host1", "pending"),
                                                          ("web-2", "host1", "pending")]
    for kind, name, code, details in [
        ("pods", "", grpc.StatusCode.INVALID_ARGUMENT,
         'unknown kind "pods" (expected nodes, services, containers or networks)'),
        ("services", "db", grpc.StatusCode.NOT_FOUND, 'service "db" not found'),
    ]:
        err = await _rpc_error(cluster.stub.Get(controller_pb2.GetRequest(kind=kind, name=name)))
        assert (err.code(), err.details()) == (code, details)


# --- proxied calls: a small Agent gRPC server on localhost ---------------------------------

class RecordingAgent(agent_pb2_grpc.AgentServicer):
    def __init__(self) -> None:
        self.loaded: list[bytes] = []

    async def Exec(self, request: common_pb2.ExecRequest, context: Any) -> AsyncIterator[Any]:
        if request.container != "web-1":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such container on this node")
        yield common_pb2.ExecOutput(stdout=" ".join(request.argv).encode())
        yield common_pb2.ExecOutput(stderr=b"warn")
        yield common_pb2.ExecOutput(exit_code=3)

    async def ImageLoad(self, request_iterator: Any, context: Any) -> Any:
        data = b"".join([f.data async for f in request_iterator])
        self.loaded.append(data)
        return common_pb2.ImageLoadResponse(refs=["busybox:latest"])


@pytest.fixture
async def agent() -> AsyncIterator[tuple[RecordingAgent, str]]:
    server = grpc.aio.server()
    servicer = RecordingAgent()
    agent_pb2_grpc.add_AgentServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_exec_is_proxied_and_errors_are_clear(
    cluster: Cluster, agent: tuple[RecordingAgent, str]
) -> None:
    _, addr = agent
    await cluster.add_node("host1", agent_addr=addr)
    await cluster.apply(APP.replace("replicas: 2", "replicas: 1"))
    await cluster.scheduler.run_pass()
    frames = [f async for f in cluster.stub.Exec(common_pb2.ExecRequest(
        container="web-1", argv=["echo", "hi"]))]
    assert [f.WhichOneof("frame") for f in frames] == ["stdout", "stderr", "exit_code"]
    assert (frames[0].stdout, frames[2].exit_code) == (b"echo hi", 3)
    err = await _rpc_error(cluster.stub.Exec(common_pb2.ExecRequest(container="db-1")))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.NOT_FOUND, 'container "db-1" not found (not assigned to any node)')
    await cluster.etcd.delete(keyspace.node("host1"))
    err = await _rpc_error(cluster.stub.Exec(common_pb2.ExecRequest(container="web-1")))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        'container "web-1": node "host1" is not Ready (its agent is down or lost its lease)')


def _docker_save_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        body = json.dumps([{"Config": "c.json", "RepoTags": ["busybox:latest"],
                            "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


async def test_image_load_stores_records_pushes_and_pulls(
    cluster: Cluster, agent: tuple[RecordingAgent, str]
) -> None:
    servicer, addr = agent
    await cluster.add_node("host1", agent_addr=addr)
    archive = _docker_save_tar()

    async def frames() -> AsyncIterator[common_pb2.ImageChunk]:
        yield common_pb2.ImageChunk(filename="busybox.tar")
        for start in range(0, len(archive), 1000):
            yield common_pb2.ImageChunk(data=archive[start:start + 1000])

    resp = await cluster.stub.ImageLoad(frames())
    assert list(resp.refs) == ["busybox:latest"] and resp.digest.startswith("sha256:")
    raw, _ = await cluster.etcd.get(keyspace.image("busybox:latest"))
    assert raw is not None and ImageRecord.loads(raw).digest == resp.digest
    assert servicer.loaded == [archive]
    pulled = [c async for c in cluster.stub.ImagePull(
        controller_pb2.ImagePullRequest(ref="busybox"))]
    assert b"".join(c.data for c in pulled) == archive
    err = await _rpc_error(cluster.stub.ImagePull(controller_pb2.ImagePullRequest(ref="nginx")))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.NOT_FOUND, 'image "nginx" not found on the controller')


async def test_health_check_serving(etcd: Etcd3Client, tmp_path: Path) -> None:
    running = await start_server(etcd, "127.0.0.1:0", tmp_path)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            resp = await stub.Check(health_pb2.HealthCheckRequest(service="berth.v1.Controller"))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop(grace=None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _ports_from_log(log: Path, proc: asyncio.subprocess.Process) -> tuple[int, int]:
    """The gRPC and /metrics ports a daemon started on port 0 says it got."""
    for _ in range(150):
        text = await asyncio.to_thread(log.read_text)
        grpc_port = re.search(r"controller listening on port (\d+)", text)
        metrics_port = re.search(r"serving /metrics on port (\d+)", text)
        if grpc_port and metrics_port:
            return int(grpc_port.group(1)), int(metrics_port.group(1))
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"controller did not say its ports: {text}")


async def test_daemon_serves_and_stops_on_sigterm(etcd_endpoint: str, tmp_path: Path) -> None:
    # Port 0 for both, read back from the log: a free port picked by the test could be
    # taken by someone else before the daemon binds it.
    log = tmp_path / "controller.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller.main", "--listen", "127.0.0.1:0",
            "--etcd", etcd_endpoint, "--state-dir", str(tmp_path / "state"),
            "--metrics-listen", "127.0.0.1:0",
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
    try:
        port, metrics_port = await _ports_from_log(log, proc)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            async with asyncio.timeout(15):
                await channel.channel_ready()
            stub = health_pb2_grpc.HealthStub(channel)
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        # /metrics parses, and the scheduler's first pass is counted.
        samples = await asyncio.to_thread(
            scrape_until, f"http://127.0.0.1:{metrics_port}/metrics",
            lambda s: s.get(("berth_reconcile_passes_total",
                             (("daemon", "controller"), ("outcome", "ok"))), 0) >= 1)
        assert samples[("berth_containers", (("daemon", "controller"), ("state", "running")))] == 0
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_daemon_without_etcd_fails_in_one_line(tmp_path: Path) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "controller.main", "--listen", "127.0.0.1:0",
         "--etcd", f"127.0.0.1:{_free_port()}", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2     # not the operator's input: berth could not reach etcd
    assert proc.stderr.startswith("berth-controller: etcd ")
    assert "Traceback" not in proc.stderr


async def test_only_the_assigned_nodes_status_counts(cluster: Cluster) -> None:
    """Statuses are per node; another node reporting web-1 must not change what get shows."""
    await cluster.add_node("host1")
    await cluster.apply(APP.replace("replicas: 2", "replicas: 1"))
    await cluster.scheduler.run_pass()
    await _report(cluster, "web-1", "running", generation=1)
    rogue = ContainerStatus(name="web-1", node="host2", state="exited", exit_code=9,
                            generation=1)
    await cluster.etcd.put(keyspace.status("host2", "web-1"), rogue.dumps())
    # A forged record under host1's own key, claiming another container, is refused too.
    forged = ContainerStatus(name="web-9", node="host1", state="running")
    await cluster.etcd.put(keyspace.status("host1", "web-7"), forged.dumps())
    ctrs = (await cluster.stub.Get(controller_pb2.GetRequest(kind="containers"))).containers
    assert sorted((c.name, c.node, c.state, c.exit_code) for c in ctrs) == [
        ("web-1", "host1", "running", 0), ("web-7", "", "invalid", 0)]
    assert await _wait(cluster, 5) == ""
