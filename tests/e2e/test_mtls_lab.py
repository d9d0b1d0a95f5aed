"""The lab runs mTLS on every hop; what strangers and the wrong roles see (issue 9).

clusterctl is run as a user would, with contexts that name other certificates (a
node's, another CA's, none); the agents are dialled as the controller would be,
with the wrong identities; etcd is asked without a certificate; and a node
certificate added and then revoked with ``clusterctl pki`` is refused by the live
controller without a restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from berth import grpcopts
from berth.errors import BerthError
from berth.etcd import Etcd3Client
from berth.tls import TlsSettings, channel
from protos import agent_pb2, agent_pb2_grpc, controller_pb2, controller_pb2_grpc
from tests.e2e.conftest import BIN, Lab

pytestmark = pytest.mark.e2e

APP = """\
apiVersion: berth/v1
kind: Service
metadata: {name: nope}
spec: {image: busybox:latest}
"""


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab]) -> Iterator[Lab]:
    yield lab_factory(2)


def _pki(lab: Lab) -> Path:
    return Path(str(lab.info["pki"]))


def _tls(directory: Path, stem: str) -> TlsSettings:
    return TlsSettings(str(directory / "ca.crt"), str(directory / f"{stem}.crt"),
                       str(directory / f"{stem}.key"))


def _ctl_as(lab: Lab, tmp_path: Path, tls: TlsSettings | None,
            *args: str) -> subprocess.CompletedProcess[str]:
    """clusterctl with a config whose one context names ``tls`` (None: plaintext)."""
    context: dict[str, Any] = {"name": "x", "server": lab.controller}
    if tls is not None:
        context |= {"ca": tls.ca, "cert": tls.cert, "key": tls.key}
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({"current-context": "x", "contexts": [context]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_CONTEXT")}
    env["BERTH_CONFIG"] = str(config)
    return subprocess.run([str(BIN / "clusterctl"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_admin_context_works(lab: Lab) -> None:
    assert "h1" in lab.ctl("get", "nodes").stdout


def test_a_node_certificate_calling_apply_is_refused(lab: Lab, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP)
    proc = _ctl_as(lab, tmp_path, _tls(_pki(lab), "node-h1"), "apply", "-f", str(manifest))
    assert proc.returncode == 1
    assert _one_line(proc) == "Error: permission denied: role node:h1 may not call Controller/Apply"
    for verb in (["delete", "service", "web"], ["exec", "web-1", "--", "id"]):
        proc = _ctl_as(lab, tmp_path, _tls(_pki(lab), "node-h1"), *verb)
        assert "permission denied: role node:h1 may not call" in _one_line(proc)
    assert "nope" not in lab.ctl("get", "services").stdout


def test_no_certificate_and_another_cas_are_refused(lab: Lab, tmp_path: Path) -> None:
    proc = _ctl_as(lab, tmp_path, None, "get", "nodes")
    assert proc.returncode == 4
    assert _one_line(proc).startswith(f"Error: cannot reach the controller at {lab.controller}")
    other = tmp_path / "other"
    made = subprocess.run([str(BIN / "clusterctl"), "pki", "init", str(other)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    # Trust the lab's CA (the server is accepted) but show the other CA's admin.
    foreign = TlsSettings(str(_pki(lab) / "ca.crt"), str(other / "admin.crt"),
                          str(other / "admin.key"))
    proc = _ctl_as(lab, tmp_path, foreign, "get", "nodes")
    assert proc.returncode == 4
    assert _one_line(proc).startswith(f"Error: cannot reach the controller at {lab.controller}")


async def _inspect_agent(lab: Lab, host: int, stem: str) -> grpc.aio.AioRpcError:
    address = lab.info["hosts"][host]["agent_address"]
    name = lab.info["hosts"][host]["name"]
    async with channel(address, _tls(_pki(lab), stem), grpcopts.channel_options(),
                       f"node-{name}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent_pb2_grpc.AgentStub(ch).Inspect(
                agent_pb2.InspectRequest(container="no-such"), timeout=10)
    return info.value


@pytest.mark.parametrize("stem", ["admin", "node-h2", "node-h1"])
def test_the_agent_refuses_every_identity_but_the_controllers(lab: Lab, stem: str) -> None:
    exc = asyncio.run(_inspect_agent(lab, 0, stem))
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    cn = stem.replace("node-", "node:")
    assert exc.details() == f"role {cn} may not call Agent/Inspect"


def test_the_controller_identity_passes_the_agent(lab: Lab) -> None:
    exc = asyncio.run(_inspect_agent(lab, 0, "controller"))
    assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.details()


def test_an_agent_cannot_start_as_another_node(lab: Lab, tmp_path: Path) -> None:
    host = lab.info["hosts"][0]
    tls = _tls(_pki(lab), "node-h2")
    proc = subprocess.run(
        [str(BIN / "berth-agent"), "--node", "h1", "--underlay-ip", host["underlay_ip"],
         "--state-dir", str(tmp_path / "state"), "--etcd", lab.info["etcd"],
         "--tlsverify", "--tlscacert", tls.ca, "--tlscert", tls.cert, "--tlskey", tls.key],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert _one_line(proc).endswith("its CN is 'node:h2', but this agent is --node h1 "
                                     "(CN 'node:h1' expected)")


def test_etcd_refuses_a_client_without_a_certificate(lab: Lab) -> None:
    async def status() -> None:
        ca = str(_pki(lab) / "ca.crt")
        async with Etcd3Client(str(lab.info["etcd"]), ca_cert=ca, timeout=3) as etcd:
            await etcd.status()

    with pytest.raises(BerthError):
        asyncio.run(status())


async def _pull_as(lab: Lab, stem: str) -> grpc.aio.AioRpcError:
    async with channel(lab.controller, _tls(_pki(lab), stem), grpcopts.channel_options()) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in controller_pb2_grpc.ControllerStub(ch).ImagePull(
                    controller_pb2.ImagePullRequest(ref="no-such:1"), timeout=10):
                pass
    return info.value


async def _etcd_status_as(lab: Lab, stem: str) -> None:
    async with lab.etcd(stem) as etcd:
        etcd.timeout = 3
        await etcd.status()


def test_a_revoked_node_certificate_is_refused_without_a_restart(lab: Lab) -> None:
    pki = str(_pki(lab))
    added = lab.ctl("pki", "add-node", pki, "h9", "--san", "10.255.255.9")
    assert "node-h9: created" in added.stdout
    assert asyncio.run(_pull_as(lab, "node-h9")).code() == grpc.StatusCode.NOT_FOUND
    asyncio.run(_etcd_status_as(lab, "node-h9"))
    lab.ctl("pki", "revoke", pki, "h9")
    exc = asyncio.run(_pull_as(lab, "node-h9"))
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
    assert exc.details() == "certificate of node:h9 is revoked; Controller/ImagePull refused"
    # etcd reads the CRL (ca.crl) on every new connection.
    with pytest.raises(BerthError):
        asyncio.run(_etcd_status_as(lab, "node-h9"))
    # The lab's own nodes are untouched by it.
    assert "Ready" in lab.ctl("get", "nodes").stdout
