"""The agent leaves berth's own devices out of the prefixes it reports (agent.registration)."""

from __future__ import annotations

from agent.registration import is_berth_device
from berth.manifest_model import DEFAULT_NETWORK, GATEWAY_NETWORK
from netplugins.bridge import config as bridge
from netplugins.contract import Attachment, ContainerId
from netplugins.overlay.devices import bridge_name, vxlan_name
from netplugins.overlay.driver import host_veth_name


def test_every_device_the_overlay_creates_counts_as_berth_s() -> None:
    att = Attachment(container_id=ContainerId("c1"), container_name="web-1",
                     netns="/proc/1/ns/net", ip="10.42.0.2", prefixlen=24,
                     mac="02:42:0a:2a:00:02")
    for vni in (1, 4096, (1 << 24) - 1):
        assert is_berth_device(bridge_name(vni)) and is_berth_device(vxlan_name(vni))
    assert is_berth_device(host_veth_name(att))


def test_the_bridge_drivers_devices_count_as_berth_s() -> None:
    att = Attachment(container_id=ContainerId("web-1"), container_name="web-1", netns="",
                     ip="10.0.0.2", prefixlen=24, mac="")
    for name in (bridge.bridge_name(DEFAULT_NETWORK), bridge.bridge_name(GATEWAY_NETWORK),
                 bridge.bridge_name("appnet"), bridge.veth_name("appnet", att)):
        assert is_berth_device(name), name


def test_host_devices_do_not_count() -> None:
    for name in ("eth0", "ens3", "docker0", "wg0", "br0", "lo", "virbr0", "vo", "bo-x",
                 "vxlan0", "voip0", "berth01", "bb-br0", "veth0123456789a", "v0123"):
        assert not is_berth_device(name)

