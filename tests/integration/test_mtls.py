"""mTLS refusals on the controller's and an agent's real gRPC servers (issue 9's must-show).

A real etcd, the controller server as berth-controller starts it (controller.server.
start_server with the controller's TlsSettings), and the agent's gRPC service behind
berth.authz as berth-agent serves it, all with certificates from ``clusterctl pki``.
Each refusal is asserted as a user sees it: the status code and the one-line message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.server import AgentService
from berth import authz, grpcopts, keyspace, pki
from berth.etcd import Etcd3Client
from berth.records import NodeRecord
from berth.tls import TlsSettings, channel
from controller.scheduler import Scheduler
from controller.server import RunningServer, start_server
from protos import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    controller_pb2,
    controller_pb2_grpc,
    netcheck_pb2,
)

pytestmark = pytest.mark.integration

APP = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec: {image: busybox:latest, command: [sleep, "1000"], placement: {node: h1}}
"""


def _pki(directory: Path) -> Path:
    pki.ensure_dir(directory)
    pki.issue(directory, pki.Identity("admin"))
    pki.issue(directory, pki.Identity("controller"), pki.parse_sans(["127.0.0.1"]))
    for node in ("h1", "h2", "h3"):
        pki.issue(directory, pki.Identity("node", node), pki.parse_sans(["127.0.0.1"]))
    return directory


def tls_of(directory: Path, stem: str) -> TlsSettings:
    return TlsSettings(str(directory / "ca.crt"), str(directory / f"{stem}.crt"),
                       str(directory / f"{stem}.key"))


@dataclass
class Cluster:
    pki: Path
    etcd: Etcd3Client
    controller: str           # "127.0.0.1:PORT"
    agent: str                # h1's agent, "127.0.0.1:PORT"
    scheduler: Scheduler

    def stub(self, stem: str | None, directory: Path | None = None) -> Any:
        tls = None if stem is None else tls_of(directory or self.pki, stem)
        return controller_pb2_grpc.ControllerStub(
            channel(self.controller, tls, grpcopts.channel_options()))

    def agent_stub(self, stem: str, server_name: str = "node-h1") -> Any:
        return agent_pb2_grpc.AgentStub(channel(
            self.agent, tls_of(self.pki, stem), grpcopts.channel_options(), server_name))


async def _serve_agent(directory: Path, stem: str) -> tuple[grpc.aio.Server, int]:
    """The agent API as berth-agent serves it (authz.make_server), runtime-less."""
    tls = tls_of(directory, stem)
    server = authz.make_server(tls, "berth-agent")
    agent_pb2_grpc.add_AgentServicer_to_server(
        AgentService(None, directory / "scratch"), server)  # type: ignore[arg-type]
    port = authz.add_port(server, "127.0.0.1:0", tls)
    await server.start()
    return server, port


@pytest.fixture
async def cluster(etcd: Etcd3Client, tmp_path: Path) -> AsyncIterator[Cluster]:
    directory = _pki(tmp_path / "pki")
    scheduler = Scheduler(etcd)
    running: RunningServer = await start_server(
        etcd, "127.0.0.1:0", tmp_path / "ctl", scheduler,
        tls=tls_of(directory, "controller"))
    agent, port = await _serve_agent(directory, "node-h1")
    try:
        yield Cluster(directory, etcd, f"127.0.0.1:{running.port}", f"127.0.0.1:{port}",
                      scheduler)
    finally:
        await agent.stop(None)
        await running.stop(grace=None)


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    return info.value


GET = controller_pb2.GetRequest(kind="nodes")


async def test_admin_may_call_the_controller(cluster: Cluster) -> None:
    reply = await cluster.stub("admin").Get(GET, timeout=10)
    assert list(reply.nodes) == []


async def test_a_client_without_a_certificate_is_refused(cluster: Cluster) -> None:
    plain = await _error(cluster.stub(None).Get(GET, timeout=10))
    assert plain.code() == grpc.StatusCode.UNAVAILABLE
    # TLS that trusts the CA but shows no certificate: the handshake fails.
    creds = grpc.ssl_channel_credentials((cluster.pki / "ca.crt").read_bytes())
    stub = controller_pb2_grpc.ControllerStub(
        grpc.aio.secure_channel(cluster.controller, creds))
    exc = await _error(stub.Get(GET, timeout=10))
    assert exc.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    pki.ensure_dir(other)
    pki.issue(other, pki.Identity("admin"))
    # It trusts our CA (so the server is accepted) but shows another CA's admin.
    (other / "ca.crt").write_bytes((cluster.pki / "ca.crt").read_bytes())
    exc = await _error(cluster.stub("admin", other).Get(GET, timeout=10))
    assert exc.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_node_certificate_cannot_apply_delete_or_exec(cluster: Cluster) -> None:
    stub = cluster.stub("node-h2")
    exc = await _error(stub.Apply(controller_pb2.ApplyRequest(manifest=APP.encode()), timeout=10))
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    assert exc.details() == "role node:h2 may not call Controller/Apply"
    exc = await _error(stub.Delete(controller_pb2.DeleteRequest(kind="service", name="web"),
                                   timeout=10))
    assert exc.details() == "role node:h2 may not call Controller/Delete"
    exc = await _error(stub.Exec(common_pb2.ExecRequest(container="web-1", argv=["id"]),
                                 timeout=10))
    assert exc.details() == "role node:h2 may not call Controller/Exec"
    assert await cluster.etcd.get_prefix(keyspace.ROOT) is not None
    # What an agent needs still passes: ImagePull reaches the handler (no such image).
    exc = await _error(stub.ImagePull(controller_pb2.ImagePullRequest(ref="nope:1"), timeout=10))
    assert exc.code() == grpc.StatusCode.NOT_FOUND


async def test_a_revoked_node_certificate_is_refused(cluster: Cluster) -> None:
    stub = cluster.stub("node-h3")
    pull = controller_pb2.ImagePullRequest(ref="nope:1")
    assert (await _error(stub.ImagePull(pull, timeout=10))).code() == grpc.StatusCode.NOT_FOUND
    pki.revoke(cluster.pki, pki.Identity("node", "h3"))
    exc = await _error(stub.ImagePull(pull, timeout=10))
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    assert exc.details() == "certificate of node:h3 is revoked; Controller/ImagePull refused"


@pytest.mark.parametrize("stem", ["admin", "node-h2", "node-h1"])
async def test_the_agent_api_refuses_every_role_but_the_controller(
    cluster: Cluster, stem: str
) -> None:
    inspect = agent_pb2.InspectRequest(container="web-1")
    cn = pki.Identity.parse(stem).cn
    for call, method in ((cluster.agent_stub(stem).Inspect(inspect, timeout=10), "Inspect"),
                         (cluster.agent_stub(stem).Exec(
                             common_pb2.ExecRequest(container="web-1", argv=["id"]), timeout=10),
                          "Exec")):
        exc = await _error(call)
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
        assert exc.details() == f"role {cn} may not call Agent/{method}"


async def test_the_controller_certificate_passes_the_agent_check(cluster: Cluster) -> None:
    diag = await _error(cluster.agent_stub("controller").NetDiag(
        netcheck_pb2.NetDiagRequest(network="x"), timeout=10))
    assert diag.details() == "this agent runs no container networking"


async def _place_web(cluster: Cluster, agent_addr: str) -> None:
    record = NodeRecord(name="h1", address="192.0.2.10", agent_addr=agent_addr,
                        bip="172.17.0.1/16", gwbridge="172.18.0.1/16")
    await cluster.etcd.put(keyspace.node("h1"), record.dumps())
    await cluster.stub("admin").Apply(controller_pb2.ApplyRequest(manifest=APP.encode()),
                                      timeout=10)
    await cluster.scheduler.run_pass()
    assert (await cluster.etcd.get(keyspace.assign("h1", "web-1")))[0] is not None


async def test_the_controller_reaches_the_agent_its_node_record_names(cluster: Cluster) -> None:
    await _place_web(cluster, cluster.agent)
    exc = await _error(cluster.stub("admin").Exec(
        common_pb2.ExecRequest(container="web-1", argv=["id"]), timeout=10))
    # Past TLS and authz: the runtime-less agent fails looking the container up.
    assert exc.code() != grpc.StatusCode.UNAVAILABLE, exc.details()
    assert exc.code() != grpc.StatusCode.PERMISSION_DENIED, exc.details()


async def test_an_agent_answering_with_another_nodes_certificate_is_refused(
    cluster: Cluster,
) -> None:
    impostor, port = await _serve_agent(cluster.pki, "node-h2")
    try:
        await _place_web(cluster, f"127.0.0.1:{port}")
        exc = await _error(cluster.stub("admin").Exec(
            common_pb2.ExecRequest(container="web-1", argv=["id"]), timeout=10))
    finally:
        await impostor.stop(None)
    assert exc.code() == grpc.StatusCode.UNAVAILABLE
    assert exc.details().startswith(f"cannot reach the agent of node h1 at 127.0.0.1:{port}")
