"""Unit tests for agent/endpoints.py: which endpoints count, now that keys are per node.

A node may write only under its own prefix (etcd RBAC), but it can still publish a
name it does not run there. The table must serve a remote endpoint only while its
container is assigned to the node that wrote it.
"""

from __future__ import annotations

import pytest

from agent.endpoints import EndpointTable
from berth import keyspace
from berth.etcd import DeleteEvent, KVMeta, Listing, PutEvent
from berth.records import Endpoint

ME = "h1"


def endpoint(container: str, node: str, ip: str, network: str = "appnet") -> Endpoint:
    return Endpoint(network=network, container=container, service=container.rsplit("-", 1)[0],
                    node=node, ip=ip, mac="02:42:0a:2a:00:09", host_ip="192.0.2.9")


def put(table: EndpointTable, key: str, value: bytes, rev: int = 2) -> None:
    table.apply(PutEvent(key, value, KVMeta(key, rev, rev, 1, 0)))


def publish(table: EndpointTable, ep: Endpoint, node: str | None = None) -> None:
    put(table, keyspace.endpoint(node or ep.node, ep.network, ep.container), ep.dumps())


def place(table: EndpointTable, node: str, container: str) -> None:
    put(table, keyspace.assign(node, container), b"{}")


def unplace(table: EndpointTable, node: str, container: str) -> None:
    key = keyspace.assign(node, container)
    table.apply(DeleteEvent(key, KVMeta(key, 0, 3, 0, 0)))


@pytest.fixture
def table() -> EndpointTable:
    return EndpointTable(lambda: None, node=ME)


def test_own_endpoints_count_at_once(table: EndpointTable) -> None:
    publish(table, endpoint("web-1", ME, "10.42.0.2"))
    assert [e.ip for e in table.on_network("appnet")] == ["10.42.0.2"]


def test_a_remote_endpoint_counts_only_while_its_container_is_assigned_there(
    table: EndpointTable,
) -> None:
    publish(table, endpoint("web-2", "h2", "10.42.0.3"))
    assert table.all() == [] and table.get("appnet", "web-2") is None
    place(table, "h2", "web-2")
    assert [e.ip for e in table.all()] == ["10.42.0.3"]
    unplace(table, "h2", "web-2")
    assert table.all() == []


def test_a_node_cannot_claim_another_nodes_container(table: EndpointTable) -> None:
    """h3 publishes web-2 (assigned to h2) under its own prefix: DNS poisoning."""
    place(table, "h2", "web-2")
    publish(table, endpoint("web-2", "h2", "10.42.0.3"))
    publish(table, endpoint("web-2", "h3", "10.42.0.66"))
    assert [(e.node, e.ip) for e in table.on_network("appnet")] == [("h2", "10.42.0.3")]
    assert table.get("appnet", "web-2") == endpoint("web-2", "h2", "10.42.0.3")


def test_a_record_naming_another_node_than_its_key_is_ignored(table: EndpointTable) -> None:
    place(table, "h2", "web-2")
    place(table, "h3", "web-2")
    forged = endpoint("web-2", "h2", "10.42.0.66")
    publish(table, forged, node="h3")     # h3's prefix, but the body says h2
    assert table.all() == [] and table.written("h3", "appnet", "web-2") is None


def test_a_moved_container_has_one_home(table: EndpointTable) -> None:
    place(table, "h2", "web-2")
    publish(table, endpoint("web-2", "h2", "10.42.0.3"))
    # The controller moves it to h3; h2 has not withdrawn its copy yet.
    unplace(table, "h2", "web-2")
    place(table, "h3", "web-2")
    publish(table, endpoint("web-2", "h3", "10.42.0.3"))
    assert [e.node for e in table.on_network("appnet")] == ["h3"]


def test_placement_changes_wake_the_network(table: EndpointTable) -> None:
    publish(table, endpoint("web-2", "h2", "10.42.0.3"))
    table.event("appnet").clear()
    place(table, "h2", "web-2")
    assert table.event("appnet").is_set()


def test_relisting_replaces_both_mirrors(table: EndpointTable) -> None:
    ep = endpoint("web-2", "h2", "10.42.0.3")
    key = keyspace.endpoint("h2", "appnet", "web-2")
    table.replace(Listing(((ep.dumps(), KVMeta(key, 5, 5, 1, 0)),), 9))
    assert table.all() == [] and table.revision == 9
    assign = keyspace.assign("h2", "web-2")
    table.replace_placements(Listing(((b"{}", KVMeta(assign, 6, 6, 1, 0)),), 9))
    assert table.all() == [ep]
    table.replace_placements(Listing((), 10))
    assert table.all() == []


@pytest.mark.parametrize("key", [
    pytest.param(keyspace.ENDPOINTS + "appnet/web-2", id="old-layout"),
    pytest.param(keyspace.ENDPOINTS + "h2/appnet/web-2/x", id="too-deep"),
    pytest.param(keyspace.ENDPOINTS + "h2//web-2", id="empty-network"),
])
def test_keys_of_another_shape_are_ignored(table: EndpointTable, key: str) -> None:
    place(table, "h2", "web-2")
    put(table, key, endpoint("web-2", "h2", "10.42.0.3").dumps())
    assert table.all() == []
