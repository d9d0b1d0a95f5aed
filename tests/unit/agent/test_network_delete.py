"""DEL needs only what CNI's DEL needs: the stored result, even when the spec is gone."""

from __future__ import annotations

from pathlib import Path

from agent.dns import DnsServer, Records
from agent.network import NetworkManager
from berth.records import ContainerSpec, NetworkAttachment
from netplugins.contract import (
    Attachment,
    AttachResult,
    HostContext,
    Interface,
    IPConfig,
    NetConf,
    Underlay,
)
from netplugins.registry import DriverEntry


class FakeDriver:
    """Records the calls; ADD returns what a veth driver would."""

    calls: list[tuple[str, Attachment, NetConf, AttachResult | None]] = []

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        self.calls.append(("add", att, net, None))
        return AttachResult(
            interfaces=(Interface("vo-host", "aa:aa:aa:aa:aa:aa"),
                        Interface(att.ifname, att.mac, sandbox=att.netns)),
            ips=(IPConfig(f"{att.ip}/{att.prefixlen}", 1, att.gateway),))

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        self.calls.append(("check", att, net, prev))

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        self.calls.append(("delete", att, net, prev))


def _manager(tmp_path: Path) -> NetworkManager:
    FakeDriver.calls = []
    ctx = HostContext(Underlay("192.0.2.10", "eth0", 1500))
    # No etcd: nothing is published in these tests, so the manager never writes.
    return NetworkManager(etcd=object(), node="h1", ctx=ctx, state_dir=tmp_path,  # type: ignore[arg-type]
                          dns=DnsServer(Records(), ()),
                          drivers={"fake": DriverEntry(make_driver=FakeDriver)})


SPEC = ContainerSpec(
    name="web-1", service="web", node="h1", image="busybox",
    networks=(NetworkAttachment(network="appnet", driver="fake", ip="10.42.0.5", prefixlen=24,
                                mac="02:42:0a:2a:00:05", gateway="10.42.0.1", vni=0),),
)


async def test_delete_without_a_spec_uses_what_add_stored(tmp_path: Path) -> None:
    nm = _manager(tmp_path)
    await nm._add(SPEC, SPEC.networks[0], "/proc/1/ns/net")
    # The agent restarted and the assignment is gone: only the container's name is known.
    restarted = _manager(tmp_path)
    await restarted.before_delete("web-1", None)
    ((verb, att, net, prev),) = FakeDriver.calls
    assert verb == "delete"
    assert (att.container_id, att.ifname, att.ip, att.prefixlen, att.mac) == (
        "web-1", "eth0", "10.42.0.5", 24, "02:42:0a:2a:00:05")
    assert (net.name, net.driver, net.subnet, net.gateway) == (
        "appnet", "fake", "10.42.0.0/24", "10.42.0.1")
    assert prev is not None and prev.host_interface() == Interface("vo-host", "aa:aa:aa:aa:aa:aa")
    assert restarted.results.networks_of("web-1") == []
    await restarted.dns.close()
    await nm.dns.close()


async def test_delete_twice_and_with_nothing_stored_is_fine(tmp_path: Path) -> None:
    nm = _manager(tmp_path)
    await nm.before_delete("never-added", None)
    await nm._add(SPEC, SPEC.networks[0], "/proc/1/ns/net")
    await nm.before_delete("web-1", SPEC)
    await nm.before_delete("web-1", SPEC)
    assert [c[0] for c in FakeDriver.calls] == ["add", "delete", "delete"]
    assert FakeDriver.calls[2][3] is None   # the second DEL has no stored result left
    await nm.dns.close()
