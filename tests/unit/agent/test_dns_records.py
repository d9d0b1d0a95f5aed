"""Unit tests for agent/dns/records.py: the per-network name table."""

from __future__ import annotations

import pytest

from agent.dns.errors import InvalidRecord
from agent.dns.records import DnsEndpoint, Records
from berth.keyspace import ContainerName, NetworkName
from berth.records import Endpoint

APPNET = NetworkName("appnet")
DBNET = NetworkName("dbnet")


def _table() -> Records:
    records = Records()
    records.set_endpoint(APPNET, ContainerName("web-1"), "web", "10.42.0.2", ["frontend"])
    records.set_endpoint(APPNET, ContainerName("web-2"), "web", "10.42.0.3")
    records.set_endpoint(DBNET, ContainerName("db-1"), "db", "10.43.0.2")
    return records


@pytest.mark.parametrize(
    ("name", "networks", "expected"),
    [
        ("web-1", ["appnet"], ["10.42.0.2"]),
        ("web", ["appnet"], ["10.42.0.2", "10.42.0.3"]),
        ("frontend", ["appnet"], ["10.42.0.2"]),
        ("WEB-2.", ["appnet"], ["10.42.0.3"]),
        ("web", ["dbnet"], []),
        ("db", ["appnet"], []),
        ("db", ["appnet", "dbnet"], ["10.43.0.2"]),
        ("web-1.appnet", ["appnet"], ["10.42.0.2"]),
        ("web-1.appnet", ["dbnet"], []),
        ("nosuch", ["appnet", "dbnet"], []),
        ("web", [], []),
    ],
    ids=[
        "container-name", "service-all-replicas", "alias", "case-and-trailing-dot",
        "other-network-hidden", "db-not-on-appnet", "two-networks", "name-dot-network",
        "name-dot-network-out-of-scope", "unknown", "no-networks",
    ],
)
def test_lookup_is_scoped_by_network(name: str, networks: list[str], expected: list[str]) -> None:
    assert sorted(_table().lookup(name, networks)) == expected


def test_lookup_rotates_replicas() -> None:
    records = _table()
    firsts = {records.lookup("web", ["appnet"])[0] for _ in range(4)}
    assert firsts == {"10.42.0.2", "10.42.0.3"}


def test_remove_endpoint_drops_only_that_container() -> None:
    records = _table()
    records.remove_endpoint(APPNET, ContainerName("web-2"))
    assert records.lookup("web-2", ["appnet"]) == []
    assert records.lookup("web", ["appnet"]) == ["10.42.0.2"]
    assert not records.known("web-2")
    records.remove_endpoint(APPNET, ContainerName("web-2"))  # idempotent
    records.remove_endpoint(NetworkName("nonet"), ContainerName("x"))


def test_removing_last_endpoint_forgets_network() -> None:
    records = _table()
    records.remove_endpoint(DBNET, ContainerName("db-1"))
    assert records.networks() == {"appnet"}


def test_set_endpoint_replaces_address_and_aliases() -> None:
    records = _table()
    records.set_endpoint(APPNET, ContainerName("web-1"), "web", "10.42.0.9")
    assert records.lookup("web-1", ["appnet"]) == ["10.42.0.9"]
    assert records.lookup("frontend", ["appnet"]) == []
    assert sorted(records.lookup("web", ["appnet"])) == ["10.42.0.3", "10.42.0.9"]


def test_same_container_on_two_networks_is_scoped_per_network() -> None:
    records = _table()
    records.set_endpoint(DBNET, ContainerName("web-1"), "web", "10.43.0.5")
    assert records.lookup("web-1", ["dbnet"]) == ["10.43.0.5"]
    assert records.lookup("web-1", ["appnet"]) == ["10.42.0.2"]
    assert records.lookup("frontend", ["dbnet"]) == []


def test_replace_all_swaps_table_and_accepts_etcd_endpoints() -> None:
    records = _table()
    records.replace_all([
        Endpoint(network="appnet", container="api-1", service="api", node="host1",
                 ip="10.42.0.7", mac="02:00:0a:2a:00:07", host_ip="192.168.0.2",
                 aliases=("backend",)),
        DnsEndpoint("dbnet", "db-2", "db", "10.43.0.3"),
    ])
    assert records.lookup("web", ["appnet"]) == []
    assert records.lookup("backend", ["appnet"]) == ["10.42.0.7"]
    assert records.lookup("db", ["dbnet"]) == ["10.43.0.3"]


def test_replace_all_keeps_old_table_on_bad_record() -> None:
    records = _table()
    with pytest.raises(InvalidRecord):
        records.replace_all([DnsEndpoint("appnet", "x", "x", "not-an-ip")])
    assert records.lookup("web-1", ["appnet"]) == ["10.42.0.2"]


@pytest.mark.parametrize(
    ("container", "service", "ip", "aliases"),
    [
        ("web-1", "web", "fd00::1", ()),
        ("web-1", "web", "10.0.0.300", ()),
        ("", "web", "10.0.0.3", ()),
        ("web-1", "web", "10.0.0.3", ("bad alias",)),
        ("web-1", "web", "10.0.0.3", ("a..b",)),
    ],
    ids=["ipv6", "bad-ipv4", "empty-name", "space-in-alias", "empty-label"],
)
def test_set_endpoint_rejects_invalid(
    container: str, service: str, ip: str, aliases: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidRecord):
        Records().set_endpoint(APPNET, ContainerName(container), service, ip, aliases)


def test_empty_service_registers_only_container_and_aliases() -> None:
    records = Records()
    records.set_endpoint(APPNET, ContainerName("solo"), "", "10.42.0.4", ["one"])
    assert records.lookup("solo", ["appnet"]) == ["10.42.0.4"]
    assert records.lookup("one", ["appnet"]) == ["10.42.0.4"]


def test_known_and_reverse() -> None:
    records = _table()
    assert records.known("DB.")
    assert not records.known("nosuch")
    assert records.reverse("10.42.0.2", ["appnet"]) == ["web-1"]
    assert records.reverse("10.42.0.2", ["dbnet"]) == []
    assert records.reverse_known("10.42.0.2")
    assert not records.reverse_known("10.99.0.1")
    assert records.reverse("garbage", ["appnet"]) == []
