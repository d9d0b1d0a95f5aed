"""etcd RBAC (berth/etcd/rbac.py) against a real etcd with TLS, --client-cert-auth and auth on.

Certificates are made here with the openssl CLI (CNs admin, controller, node:h1, node:h2;
one more node:h1 from another CA). Each refusal must reach berth code as one
EtcdPermissionDenied naming the operation and its key, and leave etcd unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from agent.endpoints import EndpointTable
from agent.nodeports import Peers
from berth import keyspace
from berth.etcd import Etcd3Client, EtcdPermissionDenied, EtcdUnavailable, follow_prefix, rbac
from berth.records import ContainerStatus, Endpoint, NodeRecord
from protos.etcd import rpc_pb2
from tests import needs
from tests.integration.conftest import EtcdTls, run_etcd
from tests.integration.test_errors import clusterctl
from tests.integration.test_poison import GOOD, Daemon, _json

pytestmark = pytest.mark.integration

IDENTITIES = ("admin", "controller", "node:h1", "node:h2")


class Server(Protocol):
    """What conftest's run_etcd / etcd_factory hand out (conftest is not importable)."""

    endpoint: str


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path

    def files(self, cn: str, *, ca: str = "ca") -> tuple[Path, Path]:
        stem = f"{ca}-{cn.replace(':', '-')}"
        return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"

    def client(self, cn: str | None, *, ca: str = "ca", timeout: float = 5.0) -> Etcd3Client:
        if cn is None:
            return Etcd3Client(ENDPOINT[0], ca_cert=str(self.ca), timeout=timeout)
        cert, key = self.files(cn, ca=ca)
        return Etcd3Client(ENDPOINT[0], ca_cert=str(self.ca), cert_cert=str(cert),
                           cert_key=str(key), timeout=timeout)


ENDPOINT = [""]     # the running etcd of the current test; Pki.client connects to it


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(base: Path) -> Pki:
    """Two CAs; from "ca" a server certificate and one per identity, from "other" node:h1."""
    needs.tool("openssl", "openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other"):
        _openssl("req", "-x509", *ec, "-keyout", str(base / f"{ca}.key"),
                 "-out", str(base / f"{ca}.crt"), "-days", "1", "-subj", f"/CN=bt-{ca}")
    pki = Pki(base, base / "ca.crt")
    wanted = [("ca", "server", "serverAuth"), *(("ca", cn, "clientAuth") for cn in IDENTITIES),
              ("other", "node:h1", "clientAuth")]
    for ca, cn, usage in wanted:
        cert, key = pki.files(cn, ca=ca)
        csr, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
        ext.write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(base / f"{ca}.crt"),
                 "-CAkey", str(base / f"{ca}.key"), "-CAcreateserial", "-out", str(cert),
                 "-days", "1", "-extfile", str(ext))
    return pki


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="bt-rbac-") as base:
        yield make_pki(Path(base))


def _tls(pki: Pki) -> EtcdTls:
    server_cert, server_key = pki.files("server")
    admin_cert, admin_key = pki.files("admin")
    return EtcdTls(pki.ca, server_cert, server_key, admin_cert, admin_key)


async def _bootstrap(pki: Pki, nodes: tuple[str, ...]) -> list[str]:
    async with pki.client("admin") as admin:
        changes = await rbac.bootstrap(admin)
        for node in nodes:
            changes += await rbac.add_node(admin, node)
        return changes


@pytest.fixture(scope="module")
def rbac_etcd(pki: Pki) -> Iterator[Pki]:
    """One etcd for the module, bootstrapped, with nodes h1 and h2."""
    with run_etcd(tls=_tls(pki)) as server:
        ENDPOINT[0] = server.endpoint
        asyncio.run(_bootstrap(pki, ("h1", "h2")))
        yield pki


@pytest.fixture
async def h1(rbac_etcd: Pki) -> AsyncIterator[Etcd3Client]:
    async with rbac_etcd.client("node:h1") as client:
        yield client


@pytest.fixture
async def admin(rbac_etcd: Pki) -> AsyncIterator[Etcd3Client]:
    async with rbac_etcd.client("admin") as client:
        yield client


# ---- refusals ----


@pytest.mark.parametrize("ca", [pytest.param(None, id="no-certificate"),
                                pytest.param("other", id="another-ca")])
async def test_a_client_without_a_certificate_of_our_ca_is_refused(
    rbac_etcd: Pki, ca: str | None
) -> None:
    client = (rbac_etcd.client(None, timeout=2.0) if ca is None
              else rbac_etcd.client("node:h1", ca=ca, timeout=2.0))
    async with client:
        with pytest.raises(EtcdUnavailable) as caught:
            await client.get(keyspace.node("h1"))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"etcd get {keyspace.node('h1')}: ")
    if ca is None:
        assert "presents no certificate" in message


@pytest.mark.parametrize("key", [
    pytest.param("/berth/desired/x", id="desired"),
    pytest.param(keyspace.desired("Service", "web"), id="desired-service"),
    pytest.param(keyspace.assign("h1", "web-1"), id="own-assign"),
    pytest.param(keyspace.assign("h2", "web-1"), id="other-assign"),
    pytest.param(keyspace.status("h2", "web-1"), id="other-status"),
    pytest.param(keyspace.endpoint("h2", "appnet", "web-1"), id="other-endpoint"),
    pytest.param(keyspace.node("h2"), id="other-node-key"),
    pytest.param(keyspace.ipam("appnet", "10.42.0.9"), id="ipam"),
    pytest.param("/elsewhere", id="outside-berth"),
])
async def test_a_node_user_cannot_write_outside_its_own_keys(
    h1: Etcd3Client, admin: Etcd3Client, key: str
) -> None:
    with pytest.raises(EtcdPermissionDenied) as caught:
        await h1.put(key, b"poison")
    assert str(caught.value) == (
        f"etcd refused put {key}: permission denied "
        "(the etcd user is the client certificate's CN)")
    with pytest.raises(EtcdPermissionDenied, match=f"transaction on {key}"):
        await h1.transaction([], [h1.transactions.put(key, b"poison")])
    with pytest.raises(EtcdPermissionDenied, match=f"delete {key}"):
        await h1.delete(key)
    assert await admin.get(key) == (None, None)


async def test_a_node_user_cannot_read_desired_state(h1: Etcd3Client) -> None:
    with pytest.raises(EtcdPermissionDenied, match="get prefix /berth/desired/"):
        await h1.get_prefix(keyspace.DESIRED)
    with pytest.raises(EtcdPermissionDenied, match="watch /berth/desired/"):
        async with contextlib.aclosing(h1.watch_prefix(keyspace.DESIRED)) as events:
            await anext(events)


# ---- what a node and the controller may do ----


async def test_a_node_user_writes_its_own_status_endpoints_and_leased_node_key(
    h1: Etcd3Client, admin: Etcd3Client
) -> None:
    status_key = keyspace.status("h1", "own-1")
    endpoint_key = keyspace.endpoint("h1", "appnet", "own-1")
    await h1.put(status_key, b"{}")
    await h1.put(endpoint_key, b"{}")
    lease = await h1.lease(10)
    await h1.put(keyspace.node("h1"), b"{}", lease=lease)
    assert await lease.refresh() > 0
    assert (await lease.time_to_live())[1] == (keyspace.node("h1"),)
    assert (await admin.get(keyspace.node("h1")))[1].lease == lease.id  # type: ignore[union-attr]
    assert [m.key for _, m in (await h1.get_prefix(keyspace.status_prefix("h1"))).items] == [
        status_key]
    assert await h1.delete(status_key) and await h1.delete(endpoint_key)
    await lease.revoke()
    assert await admin.get(keyspace.node("h1")) == (None, None)


@contextlib.asynccontextmanager
async def following(mirror: Coroutine[None, None, None], admin: Etcd3Client
                    ) -> AsyncIterator[Callable[[Callable[[], bool]], Awaitable[None]]]:
    """Run ``mirror`` (an agent's list-then-watch) as a task; yield ``until(predicate)``,
    which waits up to 10 s for it to see something. Cancels it and wipes /berth/ after."""
    task = asyncio.create_task(mirror)

    async def until(seen: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not seen():
                assert not task.done(), task
                await asyncio.sleep(0.05)

    try:
        yield until
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await admin.delete_prefix(keyspace.ROOT)


async def test_a_node_user_mirrors_assignments_and_endpoints(
    rbac_etcd: Pki, h1: Etcd3Client, admin: Etcd3Client
) -> None:
    """What agent/endpoints.py reads, under h1's user: h2's placed endpoint shows up."""
    table = EndpointTable(lambda: None, node="h1")
    async with following(table.follow(h1), admin) as until:
        ep = Endpoint(network="appnet", container="web-2", service="web", node="h2",
                      ip="10.42.0.3", mac="02:42:0a:2a:00:03", host_ip="192.0.2.2")
        await admin.put(keyspace.assign("h2", "web-2"), b"{}")
        async with rbac_etcd.client("node:h2") as h2:
            await h2.put(keyspace.endpoint("h2", "appnet", "web-2"), ep.dumps())
        await until(lambda: table.get("appnet", "web-2") == ep)


async def test_a_node_user_follows_the_nodes_whose_ports_it_closes(
    rbac_etcd: Pki, h1: Etcd3Client, admin: Etcd3Client
) -> None:
    """What agent/nodeports.py reads, under h1's user: h2's address, and not a hostile one."""
    peers = Peers(frozenset({"192.0.2.100"}))
    async with following(follow_prefix(h1, keyspace.NODES, peers.replace, peers.apply),
                         admin) as until:
        async with rbac_etcd.client("node:h2") as h2:
            await h2.put(keyspace.node("h2"), NodeRecord(
                name="h2", address="192.0.2.2", agent_addr="192.0.2.2:7071").dumps())
        await admin.put(keyspace.node("h3"), NodeRecord(
            name="h3", address="192.0.2.3 } accept", agent_addr="x").dumps())
        await until(lambda: peers.addresses() == {"192.0.2.100", "192.0.2.2"})
        await admin.delete(keyspace.node("h2"))
        await until(lambda: peers.addresses() == {"192.0.2.100"})


async def test_the_controller_writes_desired_and_assign_but_nothing_outside_berth(
    rbac_etcd: Pki, admin: Etcd3Client
) -> None:
    async with rbac_etcd.client("controller") as controller:
        await controller.put(keyspace.desired("Service", "web"), b"{}")
        ok, _ = await controller.transaction(
            [controller.transactions.version(keyspace.assign("h1", "web-1")) == 0],
            [controller.transactions.put(keyspace.assign("h1", "web-1"), b"{}"),
             controller.transactions.delete(keyspace.endpoint("h2", "appnet", "web-1"))])
        assert ok
        with pytest.raises(EtcdPermissionDenied, match="put /elsewhere"):
            await controller.put("/elsewhere", b"x")
    await admin.delete_prefix(keyspace.ROOT)


# ---- bootstrap and node lifecycle, each on a fresh etcd ----


@pytest.fixture
def fresh(pki: Pki, etcd_factory: Callable[..., Server]) -> Pki:
    ENDPOINT[0] = etcd_factory(tls=_tls(pki)).endpoint
    return pki


async def test_bootstrap_is_idempotent_and_repairs_an_edited_role(fresh: Pki) -> None:
    first = await _bootstrap(fresh, ("h1",))
    assert "enabled auth" in first and "added user node:h1" in first
    assert await _bootstrap(fresh, ("h1",)) == []
    async with fresh.client("admin") as admin:
        assert await rbac.auth_enabled(admin)
        # Someone widened node:h1 by hand: the next run takes it back, and only that.
        wide = rbac.Grant(keyspace.DESIRED, True, "readwrite")
        await admin.auth("RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(
            name="node:h1", perm=wide.to_pb()), "widen")
        assert await rbac.add_node(admin, "h1") == [
            "revoked /berth/desired/ from role node:h1"]
    async with fresh.client("node:h1") as h1:
        with pytest.raises(EtcdPermissionDenied):
            await h1.put("/berth/desired/x", b"x")


async def test_a_removed_node_is_refused(fresh: Pki) -> None:
    await _bootstrap(fresh, ("h1", "h2"))
    async with fresh.client("admin") as admin:
        assert await rbac.remove_node(admin, "h2") == ["deleted user node:h2",
                                                        "deleted role node:h2"]
        assert await rbac.remove_node(admin, "h2") == []
    async with fresh.client("node:h2") as h2:
        with pytest.raises(EtcdPermissionDenied, match=r"put /berth/status/h2/web-1"):
            await h2.put(keyspace.status("h2", "web-1"), b"{}")
    async with fresh.client("node:h1") as h1:
        await h1.put(keyspace.status("h1", "web-1"), b"{}")


@pytest.mark.parametrize("name", ["h1/../h2", "", "node:h1"])
async def test_a_node_name_that_could_reach_other_keys_is_refused(
    rbac_etcd: Pki, admin: Etcd3Client, name: str
) -> None:
    with pytest.raises(ValueError, match="node name"):
        await rbac.add_node(admin, name)


# ---- the real controller daemon under the controller's certificate ----


async def test_the_controller_daemon_schedules_under_its_etcd_user(
    fresh: Pki, tmp_path: Path
) -> None:
    """berth-controller with --etcd-cert controller; h1 registers and reports as node:h1."""
    await _bootstrap(fresh, ("h1", "h2"))
    cert, key = fresh.files("controller")
    daemon = Daemon(f"https://{ENDPOINT[0]}", tmp_path / "state", tmp_path / "controller.log")
    daemon._argv += ["--etcd-ca", str(fresh.ca), "--etcd-cert", str(cert), "--etcd-key",
                     str(key)]
    async with fresh.client("node:h1") as h1, fresh.client("node:h2") as h2:
        lease = await h1.lease(30)
        await h1.put(keyspace.node("h1"), NodeRecord(
            name="h1", address="192.0.2.10", agent_addr="127.0.0.1:1",
            bip="172.17.0.1/16", gwbridge="172.18.0.1/16").dumps(), lease=lease)
        try:
            await daemon.start()
            manifest = tmp_path / "web.yaml"
            manifest.write_text(GOOD)
            applied = await clusterctl(daemon.address, "apply", "-f", str(manifest))
            assert applied.code == 0, applied
            await _row_until(daemon.address, "web-1", "node", "h1")
            # h2 claims web-1 under its own prefix: not its container, so it does not count.
            await h2.put(keyspace.status("h2", "web-1"), ContainerStatus(
                name="web-1", node="h2", state="exited", exit_code=1).dumps())
            await h1.put(keyspace.status("h1", "web-1"), ContainerStatus(
                name="web-1", node="h1", state="running", pid=42).dumps())
            row = await _row_until(daemon.address, "web-1", "state", "running")
            assert (row["node"], row["pid"]) == ("h1", 42)
            assert "permission denied" not in (tmp_path / "controller.log").read_text()
        finally:
            await daemon.stop()
            await lease.revoke()


async def _row_until(address: str, name: str, column: str, want: str) -> dict[str, object]:
    """The container's `get containers` row once COLUMN reads WANT (within 20 s)."""
    rows: dict[str, dict[str, object]] = {}
    for _ in range(200):
        rows = await _json(address, "containers")
        if rows.get(name, {}).get(column) == want:
            return rows[name]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name}: {column} never became {want}: {rows.get(name)}")
