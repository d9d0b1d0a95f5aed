"""Scheduling decisions as pure functions (controller.placement)."""

from __future__ import annotations

import pytest

from berth.manifest import NetworkDocument, ServiceDocument, load_manifest
from berth.records import ContainerSpec, NodeRecord
from controller.placement import Assignment, DesiredService, Plan, desired_spec, plan

NET = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet}
spec: {subnet: 10.42.0.0/24}
"""


def service(name: str = "web", replicas: int = 2, extra: str = "", rev: int = 10) -> DesiredService:
    text = (f"apiVersion: berth/v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  replicas: {replicas}\n  image: busybox:latest\n{extra}")
    doc = load_manifest("t.yaml", text)[0]
    assert isinstance(doc, ServiceDocument)
    return DesiredService(doc, rev)


def networks() -> dict[str, NetworkDocument]:
    doc = load_manifest("n.yaml", NET)[0]
    assert isinstance(doc, NetworkDocument)
    return {"appnet": doc}


def nodes(*names: str) -> dict[str, NodeRecord]:
    return {n: NodeRecord(name=n, address="192.0.2.1", agent_addr="192.0.2.1:7701",
                          bip="172.17.0.1/16", gwbridge="172.18.0.1/16")
            for n in names}


def placed(svc: DesiredService, container: str, node: str, rev: int = 5) -> Assignment:
    return Assignment(node, desired_spec(svc.doc, container, node, networks()), rev)


def where(result: Plan) -> dict[str, str]:
    return {c.spec.name: c.spec.node for c in result.creates}


def test_spread_one_replica_per_node() -> None:
    web = service(replicas=2)
    result = plan({"web": web}, {}, nodes("host1", "host2"), [])
    assert where(result) == {"web-1": "host1", "web-2": "host2"}
    assert not result.removes and not result.updates and not result.pending
    assert all(c.service_revision == 10 for c in result.creates)


def test_spread_counts_existing_containers() -> None:
    db, web = service("db", replicas=2), service("web", replicas=1)
    current = [placed(db, "db-1", "host1"), placed(db, "db-2", "host1")]
    result = plan({"db": db, "web": web}, {}, nodes("host1", "host2"), current)
    assert where(result) == {"web-1": "host2"}


def test_ties_go_to_first_name_and_loads_even_out() -> None:
    result = plan({"web": service(replicas=5)}, {}, nodes("c", "a", "b"), [])
    assert where(result) == {"web-1": "a", "web-2": "b", "web-3": "c", "web-4": "a",
                             "web-5": "b"}


def test_placement_node_is_honoured() -> None:
    web = service(replicas=2, extra="  placement: {node: host2}\n")
    result = plan({"web": web}, {}, nodes("host1", "host2"), [])
    assert where(result) == {"web-1": "host2", "web-2": "host2"}


def test_placement_on_missing_node_stays_pending_with_reason() -> None:
    web = service(replicas=1, extra="  placement: {node: host9}\n")
    result = plan({"web": web}, {}, nodes("host1"), [])
    assert result.creates == []
    assert result.pending == {"web-1": 'placement.node "host9" is not a Ready node'}


def test_no_nodes_leaves_everything_pending() -> None:
    result = plan({"web": service(replicas=2)}, {}, {}, [])
    assert result.pending == {"web-1": "no Ready node", "web-2": "no Ready node"}


def test_scale_down_removes_the_highest_replicas() -> None:
    old = service(replicas=3)
    current = [placed(old, f"web-{i}", f"host{i}", rev=20 + i) for i in (1, 2, 3)]
    result = plan({"web": service(replicas=1)}, {}, nodes("host1", "host2", "host3"), current)
    assert [(r.container, r.node, r.mod_revision) for r in result.removes] == [
        ("web-2", "host2", 22), ("web-3", "host3", 23)]
    assert not result.creates and not result.updates


def test_deleted_service_removes_all_its_containers() -> None:
    old = service(replicas=2)
    current = [placed(old, "web-1", "host1"), placed(old, "web-2", "host2")]
    result = plan({}, {}, nodes("host1", "host2"), current)
    assert sorted(r.container for r in result.removes) == ["web-1", "web-2"]


def test_spec_change_updates_in_place_with_next_generation() -> None:
    old = service(replicas=1)
    current = [placed(old, "web-1", "host1", rev=7)]
    new = service(replicas=1, extra="  command: [sleep, '60']\n", rev=11)
    result = plan({"web": new}, {}, nodes("host1"), current)
    (update,) = result.updates
    assert update.spec.command == ("sleep", "60") and update.spec.generation == 2
    assert (update.mod_revision, update.service_revision, update.spec.node) == (7, 11, "host1")


def test_unchanged_service_plans_nothing() -> None:
    web = service(replicas=2, extra="  networks: [appnet]\n")
    current = [placed(web, "web-1", "host1"), placed(web, "web-2", "host2")]
    assert plan({"web": web}, networks(), nodes("host1", "host2"), current).empty


def test_container_on_lost_node_keeps_its_assignment() -> None:
    web = service(replicas=1)
    result = plan({"web": web}, {}, nodes("host2"), [placed(web, "web-1", "host1")])
    assert result.empty


def test_pinning_to_another_node_moves_the_container() -> None:
    web = service(replicas=1)
    moved = service(replicas=1, extra="  placement: {node: host2}\n")
    result = plan({"web": moved}, {}, nodes("host1", "host2"), [placed(web, "web-1", "host1")])
    assert [(r.container, r.node) for r in result.removes] == [("web-1", "host1")]
    assert where(result) == {"web-1": "host2"}


GWBRIDGE = ("berth-gwbridge", "bridge", "", ())


@pytest.mark.parametrize(
    ("networks_yaml", "expected"),
    [("  networks: [appnet]\n", (("appnet", "overlay", "", ()), GWBRIDGE)),
     ("  networks: {appnet: {aliases: [front], ip: 10.42.0.9}}\n",
      (("appnet", "overlay", "10.42.0.9", ("front",)), GWBRIDGE))],
    ids=["short-form", "aliases-and-ip"],
)
def test_attachments_carry_network_driver_and_intent(
    networks_yaml: str, expected: tuple[tuple[str, str, str, tuple[str, ...]], ...]
) -> None:
    result = plan({"web": service(replicas=1, extra=networks_yaml)}, networks(), nodes("h"), [])
    spec: ContainerSpec = result.creates[0].spec
    assert tuple((a.network, a.driver, a.ip, a.aliases) for a in spec.networks) == expected


def test_ipam_filled_address_is_kept_when_intent_unchanged() -> None:
    web = service(replicas=1, extra="  networks: [appnet]\n")
    base = placed(web, "web-1", "h")
    filled = tuple(a.model_copy(update={"ip": f"10.42.0.{5 + i}", "prefixlen": 24})
                   for i, a in enumerate(base.spec.networks))
    current = Assignment("h", base.spec.model_copy(update={"networks": filled}), 3)
    assert plan({"web": web}, networks(), nodes("h"), [current]).empty
