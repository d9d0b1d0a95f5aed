"""Unit tests for berth/keyspace.py: per-node keys stay inside their node's ranges."""

from __future__ import annotations

import pytest

from berth import keyspace


def test_everything_a_node_writes_lies_in_its_writable_ranges() -> None:
    node_key, status_prefix, endpoints_prefix = keyspace.node_writable("h1")
    assert keyspace.node("h1") == node_key
    assert keyspace.status("h1", "web-1").startswith(status_prefix)
    assert keyspace.endpoint("h1", "appnet", "web-1").startswith(endpoints_prefix)


def test_a_nodes_prefixes_do_not_cover_a_longer_names_keys() -> None:
    _, status_prefix, endpoints_prefix = keyspace.node_writable("h1")
    assert not keyspace.status("h10", "web-1").startswith(status_prefix)
    assert not keyspace.endpoint("h10", "appnet", "web-1").startswith(endpoints_prefix)


@pytest.mark.parametrize("name", [
    pytest.param("h1/../h2", id="slash"), pytest.param("", id="empty"),
])
def test_a_node_name_that_would_leave_its_range_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="node name"):
        keyspace.status(name, "web-1")
    with pytest.raises(ValueError, match="node name"):
        keyspace.check_node_name(name)


@pytest.mark.parametrize("name", ["h1", "node-2.lan", "A_b"])
def test_hostname_like_node_names_are_accepted(name: str) -> None:
    assert keyspace.check_node_name(name) == name


@pytest.mark.parametrize("name", ["-h", ".", "..", "a b", "node:h1", "x" * 64])
def test_other_node_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="node name"):
        keyspace.check_node_name(name)


def test_keys_parse_back() -> None:
    assert keyspace.parse_status(keyspace.status("h1", "web-1")) == ("h1", "web-1")
    assert keyspace.parse_endpoint(keyspace.endpoint("h1", "net", "web-1")) == (
        "h1", "net", "web-1")
    assert keyspace.parse_assign(keyspace.assign("h1", "web-1")) == ("h1", "web-1")
    assert keyspace.parse_status(keyspace.STATUS + "web-1") is None
    assert keyspace.parse_endpoint(keyspace.ENDPOINTS + "net/web-1") is None
