"""The node-ports owner's rules and names (netplugins.firewall.nodeports), without a kernel."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from berth.manifest_model import DEFAULT_NETWORK, GATEWAY_NETWORK
from netplugins.bridge import config as bridge_config
from netplugins.firewall import Base, NodePorts
from netplugins.firewall.nodeports import CONTAINER_IFACES, OWNER, node_ports_ruleset
from netplugins.firewall.rules import TableState, check_owner, render_apply
from netplugins.overlay.devices import bridge_name as overlay_bridge


@pytest.mark.parametrize("iface", [
    bridge_config.bridge_name(DEFAULT_NETWORK),
    bridge_config.bridge_name(GATEWAY_NETWORK),
    bridge_config.bridge_name("any-user-network"),
    overlay_bridge(4097),
    overlay_bridge(2**24 - 1),
], ids=["default", "gwbridge", "bridge", "overlay", "overlay-max-vni"])
def test_every_container_facing_bridge_is_matched(iface: str) -> None:
    assert any(fnmatchcase(iface, pattern) for pattern in CONTAINER_IFACES)


@pytest.mark.parametrize("iface", ["eth0", "lo", "docker0", "br-0123", "vx-4097",
                                   "bl-lab", "mvr0123456789ab"])
def test_the_node_own_interfaces_are_not(iface: str) -> None:
    assert not any(fnmatchcase(iface, pattern) for pattern in CONTAINER_IFACES)


def test_defaults_close_berth_and_etcd_ports_and_vxlan() -> None:
    ports = NodePorts()
    assert sorted(ports.tcp) == [2379, 2380, 7071, 7700, 9101, 9102]
    assert sorted(ports.udp) == [4789]
    assert ports.reserved(7071, "tcp") and ports.reserved(4789, "udp")
    assert not ports.reserved(4789, "tcp") and not ports.reserved(8080, "tcp")


def test_configured_ports_add_to_the_defaults() -> None:
    ports = NodePorts.with_tcp([17071, 2379])
    assert ports.tcp == NodePorts().tcp | {17071}


@pytest.mark.parametrize("tcp", [frozenset({0}), frozenset({65536}), frozenset()],
                         ids=["zero", "too-big", "empty"])
def test_bad_port_sets_are_refused(tcp: frozenset[int]) -> None:
    with pytest.raises(ValueError):
        NodePorts(tcp)


def test_ruleset_is_an_input_chain_in_the_inet_table_and_a_forward_chain() -> None:
    rs = node_ports_ruleset(NodePorts())
    check_owner(OWNER)
    assert rs.owner == OWNER and [c.base for c in rs.chains] == [Base.INPUT, Base.FILTER_FWD]
    assert rs.chains[0].rules == (
        'iifname { "berth0", "bb-*", "bo-*" } tcp dport { 2379, 2380, 7071, 7700, 9101, '
        "9102 } drop",
        'iifname { "berth0", "bb-*", "bo-*" } udp dport { 4789 } drop',
    )
    script = render_apply(rs, TableState())
    assert "add table inet berth" in script
    assert ("add chain inet berth filter-in { type filter hook input priority 0; "
            "policy accept; }") in script
    assert "add rule inet berth filter-in jump node-ports.filter-in" in script
    assert "add chain ip berth node-ports.filter-fwd" in script
    assert "table bridge berth" not in script


def test_peers_add_the_same_drops_on_the_forward_hook() -> None:
    rs = node_ports_ruleset(NodePorts().with_peers(["10.0.0.12", "10.0.0.9", "10.0.0.11"]))
    assert [c.base for c in rs.chains] == [Base.INPUT, Base.FILTER_FWD]
    ifaces = '{ "berth0", "bb-*", "bo-*" }'
    peers = "{ 10.0.0.9, 10.0.0.11, 10.0.0.12 }"
    assert rs.chains[1].rules == (
        f"iifname {ifaces} ip daddr {peers} tcp dport {{ 2379, 2380, 7071, 7700, 9101, "
        "9102 } drop",
        f"iifname {ifaces} ip daddr {peers} udp dport {{ 4789 }} drop",
    )
    script = render_apply(rs, TableState())
    assert "add rule ip berth filter-fwd jump node-ports.filter-fwd" in script
    # Without peers the forward chain stays, empty: refilled in place, never re-made.
    assert [(c.base, c.rules) for c in node_ports_ruleset(NodePorts()).chains][1] == (
        Base.FILTER_FWD, ())


@pytest.mark.parametrize("peer", [
    "10.0.0.1 } accept; add rule ip berth x { drop", "10.0.0.01", "::1", "h2",
    "10.0.0.0/24", "", " 10.0.0.1",
])
def test_a_peer_that_is_not_a_plain_ipv4_address_is_refused(peer: str) -> None:
    with pytest.raises(ValueError):
        NodePorts().with_peers([peer])
