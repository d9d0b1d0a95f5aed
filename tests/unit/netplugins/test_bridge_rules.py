"""The bridge driver's pure parts: settings and their refusals, derived names, and the rules
it hands the firewall for a network and for published ports."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplugins.bridge.config import (
    BridgeConf,
    bridge_name,
    container_owner,
    port_prefix,
    veth_name,
    veth_of_owner,
)
from netplugins.bridge.rules import container_ruleset, network_ruleset
from netplugins.contract import Attachment, ContainerId, NetConf, PortMap, Underlay
from netplugins.errors import NetworkConfigError
from netplugins.firewall import Base, Ruleset

UNDERLAY = Underlay("10.250.0.11", "eth0", 1500)
NET = NetConf(name="appnet", driver="bridge", subnet="10.42.0.0/24", gateway="10.42.0.1")


def att(ip: str = "10.42.0.5", *, ports: tuple[PortMap, ...] = (), default_route: bool = True,
        cid: str = "web-1", ifname: str = "eth0") -> Attachment:
    return Attachment(ContainerId(cid), cid, "/run/netns/x", ip, 24, "", ifname=ifname,
                      default_route=default_route, ports=ports)


def conf(**changes: object) -> BridgeConf:
    fields = {"name": NET.name, "driver": "bridge", "subnet": NET.subnet,
              "gateway": NET.gateway, **changes}
    return BridgeConf.of(NetConf(**fields), UNDERLAY)  # type: ignore[arg-type]


def test_defaults() -> None:
    c = conf()
    assert (c.bridge, str(c.gateway), c.mtu, c.icc, c.internal) == (
        bridge_name("appnet"), "10.42.0.1", 1500, True, False)
    assert conf(gateway="").gateway_cidr == "10.42.0.1/24"
    assert conf(mtu=1400).mtu == 1400
    assert BridgeConf.of(NetConf("bridge", "bridge", "172.17.0.0/16"), UNDERLAY).bridge == "berth0"


REFUSALS = [
    pytest.param({"options": {"icc": "no"}}, "option icc must be true or false", id="icc-value"),
    pytest.param({"options": {"parent": "eth0"}}, "unknown bridge option 'parent'", id="option"),
    pytest.param({"subnet": "10.42.0.0/33"}, "is not an IPv4 network", id="subnet"),
    pytest.param({"subnet": "10.42.0.0/31"}, "no room for a gateway", id="tiny"),
    pytest.param({"gateway": "10.43.0.1"}, "is not a host of 10.42.0.0/24", id="gateway-out"),
    pytest.param({"gateway": "10.42.0.255"}, "is not a host of", id="gateway-broadcast"),
    pytest.param({"gateway": "fe80::1"}, "is not an IPv4 address", id="gateway-v6"),
    pytest.param({"mtu": 67}, "MTU 67 is outside 68..65535", id="mtu"),
]


@pytest.mark.parametrize(("changes", "message"), REFUSALS)
def test_network_refusals(changes: dict[str, object], message: str) -> None:
    with pytest.raises(NetworkConfigError, match=re.escape(message)) as info:
        conf(**changes)
    assert str(info.value).startswith("network appnet: ")


ATT_REFUSALS = [
    pytest.param(att("10.43.0.5"), {}, "is not in 10.42.0.0/24", id="outside-subnet"),
    pytest.param(att("10.42.0.1"), {}, "is reserved", id="gateway-address"),
    pytest.param(att(ports=(PortMap(80, 80),)), {"internal": True}, "internal network",
                 id="ports-internal"),
    pytest.param(att(ports=(PortMap(80, 80),), default_route=False), {}, "default route",
                 id="ports-no-default-route"),
    pytest.param(att(ports=(PortMap(80, 80, "sctp"),)), {}, "tcp or udp", id="protocol"),
    pytest.param(att(ports=(PortMap(0, 80),)), {}, "host port 0 is outside", id="host-port"),
    pytest.param(att(ports=(PortMap(80, 70000),)), {}, "container port 70000", id="ctr-port"),
    pytest.param(att(ports=(PortMap(80, 80, host_ip="localhost"),)), {}, "is not IPv4",
                 id="host-ip"),
]


@pytest.mark.parametrize(("attachment", "changes", "message"), ATT_REFUSALS)
def test_attachment_refusals(attachment: Attachment, changes: dict[str, object],
                             message: str) -> None:
    with pytest.raises(NetworkConfigError, match=re.escape(message)):
        conf(**changes).check_attachment(attachment)


def test_network_rules_icc_on() -> None:
    rs = network_ruleset(conf())
    br = bridge_name("appnet")
    assert rs.owner == br and rs.accept_ifaces == (br,)
    chains = {c.base: c.rules for c in rs.chains}
    assert set(chains) == {Base.RAW_PRE, Base.FILTER_FWD, Base.NAT_POST}
    assert f'oifname != "{br}" ip saddr 10.42.0.0/24 masquerade' in chains[Base.NAT_POST]
    assert f'iifname "{br}" oifname "{br}" return' == chains[Base.FILTER_FWD][0]
    assert f'iifname "{br}" oifname {{ "berth0", "bb-*" }} drop' in chains[Base.FILTER_FWD]
    assert chains[Base.FILTER_FWD][-1] == f'oifname "{br}" drop'


def test_network_rules_icc_off_add_the_bridge_family() -> None:
    chains = {c.base: c.rules for c in network_ruleset(conf(options={"icc": "false"})).chains}
    assert chains[Base.BRIDGE_FWD] == (
        f'iifname "{port_prefix("appnet")}*" meta pkttype != host drop',)
    assert chains[Base.FILTER_FWD][:2] == tuple(
        f'iifname "{bridge_name("appnet")}" oifname "{bridge_name("appnet")}" {v}'
        for v in ("ct status dnat return", "drop"))


def test_internal_network_has_no_nat_and_no_way_out() -> None:
    br = bridge_name("appnet")
    chains = {c.base: c.rules for c in network_ruleset(conf(internal=True)).chains}
    assert Base.NAT_POST not in chains
    assert chains[Base.FILTER_FWD] == (f'iifname "{br}" oifname "{br}" return',
                                       f'iifname "{br}" drop', f'oifname "{br}" drop')


def test_port_rules() -> None:
    ports = (PortMap(8080, 80), PortMap(8081, 81, "udp", "127.0.0.1"),
             PortMap(8082, 82, host_ip="10.250.0.11"), PortMap(8083, 83, host_ip="0.0.0.0"))
    rs = container_ruleset(conf(), att(ports=ports))
    assert rs.owner == container_owner("appnet", att())
    chains = {c.base: c.rules for c in rs.chains}
    assert chains[Base.NAT_PRE] == (
        "ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080 dnat to 10.42.0.5:80",
        "ip daddr 10.250.0.11 tcp dport 8082 dnat to 10.42.0.5:82",
        "ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8083 dnat to 10.42.0.5:83",
    ), "a loopback-only port gets no prerouting rule"
    assert chains[Base.NAT_OUT] == (
        "fib daddr type local tcp dport 8080 dnat to 10.42.0.5:80",
        "ip daddr 127.0.0.1 udp dport 8081 dnat to 10.42.0.5:81",
        "ip daddr 10.250.0.11 tcp dport 8082 dnat to 10.42.0.5:82",
        "fib daddr type local tcp dport 8083 dnat to 10.42.0.5:83",
    )
    assert container_ruleset(conf(), att()).chains == ()


IFNAME = re.compile(r"^[a-z0-9-]{1,15}$")


@settings(max_examples=100, deadline=None, derandomize=True)
@given(network=st.text(min_size=1, max_size=80), cid=st.text(min_size=1, max_size=80),
       ifname=st.sampled_from(["eth0", "eth1", "eth12"]))
def test_derived_names_fit_and_round_trip(network: str, cid: str, ifname: str) -> None:
    a = att(cid=cid, ifname=ifname)
    names = (bridge_name(network), veth_name(network, a))
    assert all(IFNAME.match(n) for n in names), names
    Ruleset(container_owner(network, a))   # a valid firewall owner name
    assert veth_name(network, a).startswith(port_prefix(network))
    assert veth_of_owner(container_owner(network, a)) == veth_name(network, a)
    assert not veth_name(network, a).startswith(("bb-", "berth")), "a veth is no bridge"
