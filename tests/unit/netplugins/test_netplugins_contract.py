"""Pure parts of the driver contract: MAC derivation, result JSON, the registry, MTU rules."""

from __future__ import annotations

import pytest

from berth.errors import PermanentError, UserError
from netplugins.contract import (
    AttachResult,
    Interface,
    IPConfig,
    NetConf,
    Route,
    Underlay,
    mac_from_ip,
)
from netplugins.errors import NetworkConfigError, ResultFormatError, UnknownDriverError
from netplugins.overlay.devices import bridge_name, overlay_mtu, validate, vxlan_name
from netplugins.overlay.driver import OverlayDriver
from netplugins.overlay.host import OverlayHost
from netplugins.registry import lookup


@pytest.mark.parametrize(
    ("ip", "mac"),
    [
        ("10.42.0.5", "02:42:0a:2a:00:05"),
        ("172.17.0.2", "02:42:ac:11:00:02"),
        ("255.255.255.254", "02:42:ff:ff:ff:fe"),
        ("fd00::a:2a00:5", "02:42:2a:00:00:05"),
    ],
    ids=["overlay", "docker-bridge", "high-bytes", "ipv6-last-four-bytes"],
)
def test_mac_from_ip(ip: str, mac: str) -> None:
    assert mac_from_ip(ip) == mac


@pytest.mark.parametrize("bad", ["", "10.42.0", "10.42.0.5/24", "web-1"],
                         ids=["empty", "short", "cidr", "name"])
def test_mac_from_ip_rejects_non_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        mac_from_ip(bad)


RESULT = AttachResult(
    interfaces=(Interface("vo0123456789a", "aa:bb:cc:dd:ee:ff"),
                Interface("eth0", "02:42:0a:2a:00:05", "/proc/42/ns/net")),
    ips=(IPConfig("10.42.0.5/24", interface=1, gateway="10.42.0.1"),),
    routes=(Route("10.42.0.0/24"),),
    bridge="bo-7",
    mtu=1450,
)


def test_attach_result_round_trips_through_json() -> None:
    assert AttachResult.from_json(RESULT.to_json()) == RESULT
    assert RESULT.host_interface() == RESULT.interfaces[0]


@pytest.mark.parametrize("raw", ["", "{}", '{"interfaces": 3, "ips": []}'],
                         ids=["empty", "missing-fields", "wrong-type"])
def test_attach_result_rejects_bad_json(raw: str) -> None:
    with pytest.raises(ResultFormatError) as info:
        AttachResult.from_json(raw)
    assert isinstance(info.value, PermanentError)


def test_registry_names_overlay() -> None:
    entry = lookup("overlay")
    assert entry.make_driver is OverlayDriver
    assert entry.make_host is OverlayHost


def test_registry_unknown_driver_is_a_user_error() -> None:
    with pytest.raises(UnknownDriverError, match="unknown network driver 'ipvlan'") as info:
        lookup("ipvlan")
    assert isinstance(info.value, UserError)


UNDERLAY = Underlay(ip="10.250.0.11", ifname="eth0", mtu=1500)


@pytest.mark.parametrize(
    ("net_mtu", "underlay_mtu", "want"),
    [(0, 1500, 1450), (0, 9000, 8950), (1400, 1500, 1400)],
    ids=["derived", "jumbo", "explicit-smaller"],
)
def test_overlay_mtu(net_mtu: int, underlay_mtu: int, want: int) -> None:
    net = NetConf("n", "overlay", "10.42.0.0/24", vni=7, mtu=net_mtu)
    assert overlay_mtu(net, Underlay("10.250.0.11", "eth0", underlay_mtu)) == want


def test_overlay_mtu_larger_than_underlay_allows_is_refused() -> None:
    net = NetConf("n", "overlay", "10.42.0.0/24", vni=7, mtu=1500)
    with pytest.raises(NetworkConfigError, match="does not fit in underlay MTU 1500"):
        overlay_mtu(net, UNDERLAY)


@pytest.mark.parametrize("vni", [0, 1 << 24], ids=["unset", "too-big"])
def test_overlay_needs_a_valid_vni(vni: int) -> None:
    with pytest.raises(NetworkConfigError, match="needs a VNI"):
        validate(NetConf("n", "overlay", "10.42.0.0/24", vni=vni))


def test_device_names_fit_ifnamsiz() -> None:
    assert (bridge_name(7), vxlan_name(7)) == ("bo-7", "vx-7")
    assert len(bridge_name((1 << 24) - 1)) <= 15
