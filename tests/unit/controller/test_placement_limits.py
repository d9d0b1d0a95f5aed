"""Scheduling bounds (controller.placement): containers per node, huge stored replicas,
and nodes whose own addresses or routes overlap a service's network."""

from __future__ import annotations

import pytest

from berth.limits import Limits
from berth.manifest import NetworkDocument, ServiceDocument, load_manifest
from berth.records import HostPrefix, NodeRecord
from controller.placement import (
    Assignment,
    DesiredService,
    Plan,
    desired_spec,
    plan,
    replica_index,
)

NET = ("apiVersion: berth/v1\nkind: Network\nmetadata: {name: appnet}\n"
       "spec: {subnet: 10.42.0.0/24}\n")


def service(name: str = "web", replicas: int = 2, extra: str = "") -> DesiredService:
    text = (f"apiVersion: berth/v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  replicas: {replicas}\n  image: busybox:latest\n{extra}")
    doc = load_manifest("t.yaml", text)[0]
    assert isinstance(doc, ServiceDocument)
    return DesiredService(doc, 10)


def networks() -> dict[str, NetworkDocument]:
    doc = load_manifest("n.yaml", NET)[0]
    assert isinstance(doc, NetworkDocument)
    return {"appnet": doc}


def placed(svc: DesiredService, container: str, node: str) -> Assignment:
    return Assignment(node, desired_spec(svc.doc, container, node, networks()), 5)


def where(result: Plan) -> dict[str, str]:
    return {c.spec.name: c.spec.node for c in result.creates}


def node(name: str, *addresses: str, routes: tuple[str, ...] = ()) -> NodeRecord:
    return NodeRecord(name=name, address="192.0.2.1", agent_addr="192.0.2.1:7701",
                      bip="172.17.0.1/16", gwbridge="172.18.0.1/16",
                      addresses=tuple(HostPrefix(cidr=a, device="eth0") for a in addresses),
                      routes=tuple(HostPrefix(cidr=r, device="wg0") for r in routes))


def on_appnet(replicas: int, pin: str = "") -> DesiredService:
    extra = "  networks: [appnet]\n" + (f"  placement: {{node: {pin}}}\n" if pin else "")
    return service("web", replicas=replicas, extra=extra)


def test_a_full_node_gets_no_new_container_and_the_reason_is_shown() -> None:
    web = service(replicas=3)
    result = plan({"web": web}, {}, {"h1": node("h1")}, [placed(web, "web-1", "h1")],
                  Limits(max_containers_per_node=2))
    assert where(result) == {"web-2": "h1"}
    assert result.pending == {"web-3": 'no Ready node can take it: node "h1" already has 2 '
                                        "containers, the maximum (--max-containers-per-node)"}


def test_spread_skips_full_nodes() -> None:
    web = service(replicas=3)
    result = plan({"web": web}, {}, {"h1": node("h1"), "h2": node("h2")},
                  [placed(web, "web-1", "h1")], Limits(max_containers_per_node=1))
    assert where(result) == {"web-2": "h2"}
    assert "web-3" in result.pending


def test_pinned_to_a_full_node_stays_pending() -> None:
    web = service(replicas=2, extra="  placement: {node: h1}\n")
    result = plan({"web": web}, {}, {"h1": node("h1"), "h2": node("h2")}, [],
                  Limits(max_containers_per_node=1))
    assert where(result) == {"web-1": "h1"}
    assert result.pending == {"web-2": 'node "h1" already has 1 containers, the maximum '
                                        "(--max-containers-per-node)"}


@pytest.mark.timeout(30)     # planning 10^9 names would take minutes and gigabytes
def test_huge_replicas_already_stored_are_skipped_not_planned() -> None:
    doc = load_manifest("t.yaml", "apiVersion: berth/v1\nkind: Service\nmetadata: {name: web}\n"
                        "spec: {replicas: 1000000000, image: busybox}\n", None)[0]
    assert isinstance(doc, ServiceDocument)
    huge = DesiredService(doc, 7)
    result = plan({"web": huge}, {}, {"h1": node("h1")}, [placed(huge, "web-1", "h1")])
    assert result.empty and not result.pending
    assert result.invalid == {"web": "replicas 1000000000 is more than the maximum of 100 "
                                     "(--max-replicas); its containers are left as they are"}


def test_replica_index_parses_without_building_names() -> None:
    assert replica_index("web", "web-7") == 7
    assert replica_index("web", "web-07") == 0
    assert replica_index("web", "web-0") == 0
    assert replica_index("web", "webx-1") == 0
    assert replica_index("web", "web-" + "9" * 40) == 0


def test_node_with_overlapping_address_gets_none_of_the_network() -> None:
    web = on_appnet(2)
    nodes = {"h1": node("h1", "192.0.2.5/24"), "late": node("late", "10.42.0.7/16")}
    result = plan({"web": web}, networks(), nodes, [])
    assert where(result) == {"web-1": "h1", "web-2": "h1"}


def test_pinned_to_an_overlapping_node_is_pending_with_the_overlap() -> None:
    web = on_appnet(1, pin="late")
    nodes = {"h1": node("h1"), "late": node("late", "10.42.0.7/16")}
    result = plan({"web": web}, networks(), nodes, [])
    assert result.pending == {"web-1": "network appnet (10.42.0.0/24) overlaps node late's "
                                       "address 10.42.0.7/16 on eth0"}


def test_overlapping_route_counts_and_every_reason_is_listed() -> None:
    web = on_appnet(1)
    nodes = {"a": node("a", routes=("10.42.0.128/25",)), "b": node("b", "10.0.0.1/8")}
    result = plan({"web": web}, networks(), nodes, [])
    assert result.pending == {"web-1": (
        "no Ready node can take it: network appnet (10.42.0.0/24) overlaps node a's route to "
        "10.42.0.128/25 on wg0; network appnet (10.42.0.0/24) overlaps node b's address "
        "10.0.0.1/8 on eth0")}


def test_unrelated_networks_and_services_without_networks_are_not_blocked() -> None:
    other = load_manifest("n.yaml", "apiVersion: berth/v1\nkind: Network\n"
                          "metadata: {name: other}\nspec: {subnet: 10.99.0.0/24}\n")[0]
    assert isinstance(other, NetworkDocument)
    nets = {**networks(), "other": other}
    result = plan({"web": on_appnet(1), "db": service("db", 1)}, nets,
                  {"h1": node("h1", "10.99.0.3/24")}, [])
    assert where(result) == {"web-1": "h1", "db-1": "h1"}
