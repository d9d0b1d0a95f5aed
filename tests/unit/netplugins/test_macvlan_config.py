"""The macvlan driver's pure parts: options, VLAN parents, MTU rule, names, refusals.

Everything here is refused before a netlink request is made, so no kernel is needed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.errors import PermanentError, TemporaryError, UserError
from netplugins.contract import (
    Attachment,
    ContainerId,
    HostContext,
    NetConf,
    PortMap,
    Underlay,
)
from netplugins.errors import (
    NetworkConfigError,
    ParentMissingError,
    ParentUnavailableError,
    ParentUnusableError,
    VlanUnsupportedError,
)
from netplugins.macvlan.config import (
    MacvlanConf,
    VlanParent,
    anchor_name,
    check_vlan_id,
    macvlan_mtu,
    parse,
    valid_ifname,
    vlan_of,
)
from netplugins.macvlan.driver import MacvlanDriver, refuse
from netplugins.macvlan.host import MacvlanHost
from netplugins.registry import lookup


def net(**options: str) -> NetConf:
    return NetConf(name="lan", driver="macvlan", subnet="192.168.1.0/24",
                   gateway="192.168.1.1", options=options)


def att(**kw: object) -> Attachment:
    base: dict[str, object] = dict(
        container_id=ContainerId("c1"), container_name="web-1", netns="/nonexistent/ns",
        ip="192.168.1.50", prefixlen=24, mac="02:42:c0:a8:01:32", gateway="192.168.1.1")
    return Attachment(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "conf"), [
    pytest.param({"parent": "eth0"}, MacvlanConf("lan", "eth0", "bridge", None),
                 id="bridge-by-default"),
    pytest.param({"parent": "eth0", "mode": "private"},
                 MacvlanConf("lan", "eth0", "private", None), id="private"),
    pytest.param({"parent": "eth0.10", "mode": "vepa"},
                 MacvlanConf("lan", "eth0.10", "vepa", VlanParent("eth0", 10)), id="vlan"),
    pytest.param({"parent": "bond0.4094", "mode": "passthru"},
                 MacvlanConf("lan", "bond0.4094", "passthru", VlanParent("bond0", 4094)),
                 id="passthru-top-vlan"),
    pytest.param({"parent": "br.lan"}, MacvlanConf("lan", "br.lan", "bridge", None),
                 id="dotted-but-not-a-vlan"),
])
def test_parse(options: dict[str, str], conf: MacvlanConf) -> None:
    assert parse(net(**options)) == conf


@pytest.mark.parametrize(("options", "message"), [
    pytest.param({}, "macvlan network lan: options.parent is required (e.g. eth0 or eth0.10)",
                 id="no-parent"),
    pytest.param({"parent": "eth0", "mode": "l2"},
                 "macvlan network lan: unknown mode 'l2' (one of bridge, vepa, private, "
                 "passthru)", id="unknown-mode"),
    pytest.param({"parent": "eth0", "macvlan_mode": "bridge"},
                 "macvlan network lan: unknown option 'macvlan_mode' (macvlan takes parent, "
                 "mode)", id="unknown-option"),
    pytest.param({"parent": "averyveryverylongname"},
                 "macvlan network lan: parent 'averyveryverylongname' is not an interface "
                 "name (1-15 bytes, no '/', ':' or spaces)", id="too-long"),
    pytest.param({"parent": "../eth0"}, "macvlan network lan: parent '../eth0' is not an "
                 "interface name (1-15 bytes, no '/', ':' or spaces)", id="slash"),
])
def test_bad_options_are_one_line(options: dict[str, str], message: str) -> None:
    with pytest.raises(NetworkConfigError) as raised:
        parse(net(**options))
    assert str(raised.value) == message
    assert isinstance(raised.value, UserError)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=24))
def test_any_parent_is_refused_or_a_valid_interface_name(parent: str) -> None:
    try:
        conf = parse(net(parent=parent))
    except NetworkConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert valid_ifname(conf.parent)
    assert 0 < len(conf.parent.encode()) <= 15
    if conf.vlan is not None:
        base, vid = parent.rsplit(".", 1)
        assert (conf.vlan.base, conf.vlan.vid) == (base, int(vid))


@pytest.mark.parametrize(("parent", "vlan"), [
    ("eth0.10", VlanParent("eth0", 10)),
    ("enp3s0.1.20", VlanParent("enp3s0.1", 20)),
    ("eth0", None),
    ("eth0.", None),
    ("eth0.10a", None),
    (".10", None),
], ids=["simple", "stacked", "plain", "trailing-dot", "suffix", "no-base"])
def test_vlan_of(parent: str, vlan: VlanParent | None) -> None:
    assert vlan_of(parent) == vlan


@pytest.mark.parametrize("vid", [0, 4095, 9999], ids=["zero", "reserved", "too-big"])
def test_vlan_id_out_of_range_is_refused(vid: int) -> None:
    conf = parse(net(parent=f"eth0.{vid}"))
    assert conf.vlan is not None
    with pytest.raises(NetworkConfigError, match=f"{vid} is not a VLAN ID"):
        check_vlan_id(conf, conf.vlan)


@pytest.mark.parametrize(("mtu", "parent_mtu", "want"), [
    (0, 1500, 1500), (0, 9000, 9000), (1400, 1500, 1400), (1500, 1500, 1500), (68, 1500, 68),
], ids=["parents", "jumbo-parent", "smaller", "equal", "least"])
def test_mtu_rule(mtu: int, parent_mtu: int, want: int) -> None:
    conf = NetConf(name="lan", driver="macvlan", subnet="", mtu=mtu)
    assert macvlan_mtu(conf, "eth0", parent_mtu) == want


@pytest.mark.parametrize("mtu", [1501, 9000, 67], ids=["one-over", "jumbo", "too-small"])
def test_mtu_above_the_parent_or_too_small_is_refused(mtu: int) -> None:
    conf = NetConf(name="lan", driver="macvlan", subnet="", mtu=mtu)
    with pytest.raises(NetworkConfigError, match=f"MTU {mtu} does not fit parent eth0"):
        macvlan_mtu(conf, "eth0", 1500)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=63))
def test_reference_names_fit_and_are_stable(network: str) -> None:
    name = anchor_name(network)
    assert len(name) == 15 and valid_ifname(name) and name.startswith("mvr")
    assert anchor_name(network) == name


def test_published_ports_are_refused_before_any_kernel_work() -> None:
    with pytest.raises(NetworkConfigError) as raised:
        refuse(att(ports=(PortMap(8080, 80),)), net(parent="eth0"))
    assert str(raised.value) == (
        "macvlan network lan: web-1 publishes port 8080/tcp, and macvlan does not publish "
        "ports: the container has its own address on the LAN; publish through a bridge network"
    )


async def test_add_refuses_ports_without_touching_a_namespace() -> None:
    # The netns path does not exist: reaching the kernel would raise NetnsNotFoundError.
    driver = lookup("macvlan").make_driver(_ctx())
    with pytest.raises(NetworkConfigError, match="does not publish ports"):
        await driver.add(att(ports=(PortMap(8080, 80),)), net(parent="eth0"))
    with pytest.raises(NetworkConfigError, match="has no gateway"):
        await driver.add(att(gateway="", default_route=True), net(parent="eth0"))
    with pytest.raises(NetworkConfigError, match=r"options\.parent is required"):
        await driver.add(att(), net())


def _ctx() -> HostContext:
    return HostContext(Underlay("192.168.1.11", "eth0", 1500), host_netns="/nonexistent/ns")


def test_registry_builds_the_macvlan_driver_and_host() -> None:
    entry = lookup("macvlan")
    assert isinstance(entry.make_driver(_ctx()), MacvlanDriver)
    assert entry.make_host is not None
    assert isinstance(entry.make_host(net(parent="eth0"), _ctx()), MacvlanHost)
    with pytest.raises(NetworkConfigError, match="unknown mode"):
        entry.make_host(net(parent="eth0", mode="nope"), _ctx())


@pytest.mark.parametrize(("cls", "retry"), [
    (ParentMissingError, TemporaryError), (ParentUnusableError, TemporaryError),
    (VlanUnsupportedError, PermanentError),
], ids=["missing-may-appear", "unusable-may-free", "no-8021q-stays"])
def test_parent_errors_share_a_base_and_say_whether_waiting_helps(
    cls: type[Exception], retry: type[Exception]
) -> None:
    assert issubclass(cls, ParentUnavailableError) and issubclass(cls, retry)
    assert not issubclass(cls, UserError)
