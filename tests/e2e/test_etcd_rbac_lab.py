"""etcd RBAC in the lab (issue 9): users from certificate CNs, each node confined to its keys.

The lab turns RBAC on after etcd starts (berth.etcd.rbac), and every daemon reaches etcd
as its certificate's CN. Here the lab's own certificates are used as an intruder would use
a stolen one, and the cluster is checked to work under those users: an overlay service
across both hosts, pinging by name, with no refusal in any daemon's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from berth import keyspace
from berth.etcd import Etcd3Client, EtcdPermissionDenied, EtcdUnavailable
from clusterctl.lab.state import lab_dir
from tests.e2e.conftest import Lab, wait_until

pytestmark = pytest.mark.e2e

APP = """\
apiVersion: berth/v1
kind: Network
metadata: {name: rbacnet}
spec: {driver: overlay, subnet: 10.47.0.0/24}
---
apiVersion: berth/v1
kind: Service
metadata: {name: rb}
spec:
  replicas: 2
  image: busybox:latest
  command: [sleep, "3600"]
  networks: [rbacnet]
"""


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Lab]:
    lab = lab_factory(2)
    manifest = tmp_path_factory.mktemp("rbac") / "app.yaml"
    manifest.write_text(APP)
    lab.ctl("apply", "-f", str(manifest), "--wait")
    yield lab


async def _put_as(lab: Lab, stem: str, key: str) -> None:
    async with lab.etcd(stem) as etcd:
        await etcd.put(key, b'{"poison": true}')


async def _get_as_admin(lab: Lab, key: str) -> bytes | None:
    async with lab.etcd() as etcd:
        return (await etcd.get(key))[0]


def test_etcd_refuses_a_client_without_a_certificate(lab: Lab) -> None:
    async def get() -> None:
        ca = str(Path(str(lab.info["pki"])) / "ca.crt")
        async with Etcd3Client(str(lab.info["etcd"]), ca_cert=ca, timeout=3) as etcd:
            await etcd.get(keyspace.desired("Service", "rb"))

    with pytest.raises(EtcdUnavailable, match="presents no certificate"):
        asyncio.run(get())


@pytest.mark.parametrize("key", [
    pytest.param("/berth/desired/x", id="desired"),
    pytest.param(keyspace.assign("h1", "rb-9"), id="assign"),
    pytest.param(keyspace.status("h2", "rb-1"), id="h2-status"),
    pytest.param(keyspace.status("h2", "rb-2"), id="h2-status-2"),
    pytest.param(keyspace.endpoint("h2", "rbacnet", "rb-1"), id="h2-endpoint"),
    pytest.param(keyspace.node("h2"), id="h2-node"),
])
def test_node_h1_cannot_write_outside_its_own_keys(lab: Lab, key: str) -> None:
    before = asyncio.run(_get_as_admin(lab, key))
    with pytest.raises(EtcdPermissionDenied) as caught:
        asyncio.run(_put_as(lab, "node-h1", key))
    assert str(caught.value) == (f"etcd refused put {key}: permission denied "
                                 "(the etcd user is the client certificate's CN)")
    assert asyncio.run(_get_as_admin(lab, key)) == before


def test_the_cluster_runs_under_its_etcd_users(lab: Lab) -> None:
    rows = lab.containers()
    assert sorted((r["name"], r["state"]) for r in rows.values()) == [
        ("rb-1", "running"), ("rb-2", "running")]
    assert {r["node"] for r in rows.values()} == {"h1", "h2"}
    wait_until("rb-1 pings rb-2 by name", lambda: lab.ctl(
        "exec", "rb-1", "--", "ping", "-c1", "-W2", "rb-2", check=False).returncode == 0,
        timeout=30)
    logs = sorted((lab_dir(lab.name) / "logs").glob("*.log"))
    assert {p.name for p in logs} >= {"controller.log", "agent-h1.log", "agent-h2.log"}
    for log in logs:
        assert "etcd refused" not in log.read_text(errors="replace"), log


def test_pki_add_node_and_revoke_with_etcd_make_and_delete_its_user(lab: Lab) -> None:
    """``pki add-node --etcd`` gives a new node its confined etcd user; ``pki revoke --etcd``
    deletes it, so even a connection the node opened before the revocation (which etcd's
    CRL, checked per connection, would not stop) is refused on its next request."""
    pki_dir, endpoint = str(lab.info["pki"]), str(lab.info["etcd"])
    added = lab.ctl("pki", "add-node", pki_dir, "h9", "--san", "10.99.0.9", "--etcd", endpoint)
    assert "node-h9: etcd added user node:h9" in added.stdout, added.stdout
    assert "node-h9: created (CN node:h9)" in added.stdout

    async def as_h9_across_the_revocation() -> None:
        async with lab.etcd("node-h9") as etcd:
            await etcd.put(keyspace.status("h9", "x"), b"{}")
            with pytest.raises(EtcdPermissionDenied):
                await etcd.put(keyspace.status("h1", "x"), b"{}")
            revoked = await asyncio.to_thread(
                lab.ctl, "pki", "revoke", pki_dir, "h9", "--etcd", endpoint)
            assert "node-h9: revoked" in revoked.stdout, revoked.stdout
            assert "node-h9: etcd deleted user node:h9" in revoked.stdout, revoked.stdout
            with pytest.raises(EtcdPermissionDenied):
                await etcd.put(keyspace.status("h9", "x"), b"{}")

    asyncio.run(as_h9_across_the_revocation())
    # A new connection with the revoked certificate does not get that far.
    with pytest.raises((EtcdUnavailable, EtcdPermissionDenied)):
        asyncio.run(_put_as(lab, "node-h9", keyspace.status("h9", "x")))
    again = lab.ctl("pki", "revoke", pki_dir, "h9", "--etcd", endpoint)
    assert "node-h9: etcd user node:h9 was already so" in again.stdout, again.stdout
