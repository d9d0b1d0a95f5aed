"""What agent.network hands the drivers, and what DNS it gives each kind of container.

The drivers are a fake table under the real driver names (the bridge and macvlan drivers
are built elsewhere), so the agent's own rules run: ports on the default-route attachment,
the NetConf copied from the attachment, no DNS by name on the implicit networks, names on
a bridge network kept to their node, and driver refusals turned into a pending reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from agent.dns import DnsServer, Records, Upstream
from agent.errors import NetworkUnavailable
from agent.network import NetworkManager, attachment, dns_scope, network_spec
from agent.runtime.bundle import ContainerFiles
from agent.runtime.containers import Container
from berth import keyspace
from berth.errors import PermanentError, TemporaryError, UserError
from berth.etcd import KVMeta, Listing, PutEvent
from berth.lifecycle import ContainerState
from berth.records import ContainerSpec, Endpoint, NetworkAttachment, PortMapping
from netplugins.contract import (
    Attachment,
    AttachResult,
    HostContext,
    Interface,
    IPConfig,
    NetConf,
    PeerSource,
    PortMap,
    Underlay,
)
from netplugins.errors import KernelError, NetpluginError, NetworkConfigError
from netplugins.registry import DriverEntry

NODE = "h1"


class FakeDriver:
    calls: list[tuple[str, Attachment, NetConf]] = []
    fail: Exception | None = None

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        self.calls.append(("add", att, net))
        if FakeDriver.fail is not None:
            raise FakeDriver.fail
        return AttachResult(interfaces=(Interface(att.ifname, att.mac, sandbox=att.netns),),
                            ips=(IPConfig(att.cidr, 0, att.gateway),))

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        self.calls.append(("check", att, net))

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        self.calls.append(("delete", att, net))


class FakeHost:
    """Programs whatever it is given at once, as a host object that never fails."""

    def __init__(self, net: NetConf, ctx: HostContext) -> None:
        self.net = net

    async def ensure(self) -> None:
        return None

    async def run(self, peers: PeerSource) -> None:
        while True:
            await peers.programmed(await peers.snapshot())
            await peers.wait_changed()

    async def teardown(self) -> None:
        return None


class FakeDns(DnsServer):
    """Records attach/detach; opening sockets in a netns is tests/integration's job."""

    def __init__(self, upstreams: tuple[Upstream, ...] = ()) -> None:
        super().__init__(Records(), upstreams)
        self.scopes: dict[str, frozenset[str]] = {}

    async def attach(self, container: str, netns_path: str, networks: Iterable[str]) -> None:
        self.scopes[container] = frozenset(networks)

    async def detach(self, container: str) -> None:
        self.scopes.pop(container, None)


class MemoryKV:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def put(self, key: str, value: bytes | str, lease: object = None) -> int:
        self.data[key] = value.encode() if isinstance(value, str) else value
        return len(self.data)

    async def get_prefix(self, prefix: str) -> Listing:
        return Listing((), 1)


DRIVERS = {name: DriverEntry(make_driver=FakeDriver, make_host=FakeHost)
           for name in ("bridge", "overlay", "macvlan")}


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[NetworkManager]:
    FakeDriver.calls, FakeDriver.fail = [], None
    (tmp_path / "host-resolv.conf").write_text(
        "nameserver 127.0.0.53\nsearch corp.example\noptions edns0\n")
    (tmp_path / "host-hosts").write_text("127.0.0.1 localhost\n10.0.0.1 h1.corp.example h1\n")
    nm = NetworkManager(
        etcd=MemoryKV(), node=NODE,  # type: ignore[arg-type]
        ctx=HostContext(Underlay("192.0.2.10", "eth0", 1500)), state_dir=tmp_path / "state",
        dns=FakeDns((Upstream("10.0.0.53"),)), drivers=DRIVERS,
        host_resolv_conf=tmp_path / "host-resolv.conf", host_hosts=tmp_path / "host-hosts",
    )
    try:
        yield nm
    finally:
        await nm.close()
        await nm.dns.close()


def att(network: str, driver: str, ip: str, **kw: object) -> NetworkAttachment:
    return NetworkAttachment(network=network, driver=driver, ip=ip, prefixlen=24,
                             gateway=ip.rsplit(".", 1)[0] + ".1", mac="02:42:00:00:00:01",
                             **kw)  # type: ignore[arg-type]


def spec(name: str, *networks: NetworkAttachment, **kw: object) -> ContainerSpec:
    return ContainerSpec(name=name, service=name.rsplit("-", 1)[0], node=NODE,
                         image="busybox", networks=networks, **kw)  # type: ignore[arg-type]


def container(tmp_path: Path, s: ContainerSpec, pid: int = 4242) -> Container:
    cdir = tmp_path / "ctr" / s.name
    cdir.mkdir(parents=True, exist_ok=True)
    files = ContainerFiles(cdir / "hosts", cdir / "hostname", cdir / "resolv.conf")
    for path in (files.hosts, files.hostname, files.resolv_conf):
        path.write_text("untouched\n")
    return Container(name=s.name, state=ContainerState.CREATED, pid=pid, exit_code=None,
                     started_at="", finished_at="", error="", bundle=cdir, files=files,
                     netns=f"/proc/{pid}/ns/net", spec=s, image_id="sha256:x")


PORTS = (PortMapping(container_port=80, host_port=8080),
         PortMapping(container_port=53, host_port=32768, protocol="udp", host_ip="10.0.0.1"))
WEB = spec(
    "web-1",
    att("appnet", "overlay", "10.42.0.5", vni=7, mtu=1400, aliases=("frontend",)),
    att("lan", "bridge", "10.50.0.5", default_route=True, internal=False,
        options={"icc": "false"}),
    att("backend", "bridge", "10.60.0.5", internal=True),
    ports=PORTS,
)


def test_network_spec_copies_the_networks_settings_from_the_attachment() -> None:
    lan = network_spec(WEB.networks[1])
    assert lan == NetConf(name="lan", driver="bridge", subnet="10.50.0.0/24",
                          gateway="10.50.0.1", options={"icc": "false"})
    assert dict(lan.options) == {"icc": "false"} and not lan.internal
    assert network_spec(WEB.networks[2]).internal
    overlay = network_spec(WEB.networks[0])
    assert (overlay.vni, overlay.mtu) == (7, 1400)


def test_ports_ride_on_the_default_route_attachment_only() -> None:
    built = {a.network: attachment(WEB, a, "/proc/1/ns/net") for a in WEB.networks}
    assert built["lan"].default_route and built["lan"].ports == (
        PortMap(host_port=8080, container_port=80),
        PortMap(host_port=32768, container_port=53, protocol="udp", host_ip="10.0.0.1"))
    assert [(n, a.default_route, a.ports) for n, a in built.items() if n != "lan"] == [
        ("appnet", False, ()), ("backend", False, ())]
    assert {n: a.ifname for n, a in built.items()} == {
        "appnet": "eth0", "backend": "eth1", "lan": "eth2"}


async def test_del_without_the_spec_gets_the_ports_and_settings_add_had(
    manager: NetworkManager, tmp_path: Path,
) -> None:
    await manager.before_start(WEB, container(tmp_path, WEB))
    added = {a.ifname: (a, n) for verb, a, n in FakeDriver.calls if verb == "add"}
    FakeDriver.calls = []
    # The agent restarted and the assignment is gone: only the name is known.
    restarted = NetworkManager(etcd=MemoryKV(), node=NODE, ctx=manager.ctx,  # type: ignore[arg-type]
                               state_dir=manager.state_dir, dns=FakeDns(), drivers=DRIVERS)
    await restarted.before_delete("web-1", None)
    deleted = {a.ifname: (a, n) for verb, a, n in FakeDriver.calls if verb == "delete"}
    assert set(deleted) == {"eth0", "eth1", "eth2"}
    for ifname, (a, n) in added.items():
        assert deleted[ifname] == (a.__class__(**{**a.__dict__, "netns": ""}), n)
    lan_att, lan_net = deleted["eth2"]
    assert lan_att.ports and lan_att.default_route and dict(lan_net.options) == {"icc": "false"}
    await restarted.dns.close()


async def test_only_on_the_default_bridge_gets_the_nodes_resolvers_and_no_names(
    manager: NetworkManager, tmp_path: Path,
) -> None:
    solo = spec("solo-1", att("bridge", "bridge", "172.17.0.2", default_route=True))
    ctr = container(tmp_path, solo)
    await manager.before_start(solo, ctr)
    assert ctr.files.resolv_conf.read_text().splitlines()[1:] == [
        "nameserver 10.0.0.53", "search corp.example", "options edns0"]
    assert "127.0.0.11" not in ctr.files.resolv_conf.read_text()
    assert "172.17.0.2\tsolo-1" in ctr.files.hosts.read_text()
    assert isinstance(manager.dns, FakeDns) and manager.dns.scopes == {}
    await manager.ensure_running(solo, ctr)
    assert manager.etcd.data == {}  # type: ignore[attr-defined]


async def test_overlay_with_gateway_bridge_resolves_the_overlay_only(
    manager: NetworkManager, tmp_path: Path,
) -> None:
    s = spec("api-1", att("appnet", "overlay", "10.42.0.9", vni=7),
             att("berth-gwbridge", "bridge", "172.18.0.9", default_route=True))
    ctr = container(tmp_path, s)
    await manager.before_start(s, ctr)
    assert ctr.files.resolv_conf.read_text().startswith("nameserver 127.0.0.11\n")
    assert manager.dns.scopes == {"api-1": frozenset({"appnet"})}  # type: ignore[attr-defined]
    assert dns_scope(s) == frozenset({"appnet"})
    await manager.ensure_running(s, ctr)
    assert sorted(manager.etcd.data) == [keyspace.endpoint(NODE, "appnet", "api-1")]  # type: ignore[attr-defined]


def ep(network: str, name: str, node: str, ip: str) -> Endpoint:
    return Endpoint(network=network, container=name, service=name.rsplit("-", 1)[0], node=node,
                    ip=ip, mac="02:42:00:00:00:02", host_ip="192.0.2.1" + node[-1])


async def test_names_on_a_bridge_network_stay_on_their_node(
    manager: NetworkManager, tmp_path: Path,
) -> None:
    s = spec("web-1", att("appnet", "overlay", "10.42.0.5", vni=7),
             att("lan", "bridge", "10.50.0.5", default_route=True))
    await manager.before_start(s, container(tmp_path, s))
    table = [ep("lan", "web-1", "h1", "10.50.0.5"), ep("lan", "web-2", "h1", "10.50.0.6"),
             ep("lan", "web-3", "h2", "10.50.0.5"), ep("appnet", "web-1", "h1", "10.42.0.5"),
             ep("appnet", "web-3", "h2", "10.42.0.7"), ep("bridge", "solo-1", "h1", "172.17.0.2")]
    for i, e in enumerate(table):
        key = keyspace.endpoint(e.node, e.network, e.container)
        manager.table.apply(PutEvent(key, e.dumps(), KVMeta(key, 1, i + 2, 1, 0)))
        # The controller placed the remote ones there: their endpoints count.
        placed = keyspace.assign(e.node, e.container)
        manager.table.apply(PutEvent(placed, b"{}", KVMeta(placed, 1, i + 2, 1, 0)))
    await asyncio.sleep(0.05)   # the fake hosts program what they are given
    lan_peers = await manager._hosts["lan"].peers.snapshot()
    assert sorted(p.ip for p in lan_peers) == ["10.50.0.5", "10.50.0.6"]
    records = manager.records
    assert records.lookup("web-3", ["lan"]) == [] and records.lookup("web-2", ["lan"]) == [
        "10.50.0.6"]
    assert records.lookup("web-3", ["appnet"]) == ["10.42.0.7"]   # the overlay spans nodes
    assert records.lookup("solo-1", ["bridge"]) == [] and "bridge" not in records.networks()


class ParentGone(NetpluginError, TemporaryError):
    """What a macvlan driver says when the parent is missing on this node."""


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ParentGone("parent interface eth9 does not exist on this node",
                                delay=10.0), id="temporary"),
        pytest.param(KernelError("RTNETLINK answers: File exists"), id="kernel"),
        pytest.param(NetworkConfigError("802.1q is not supported by this kernel"),
                     id="config-user-error-still-retried"),
    ],
)
async def test_a_driver_refusal_is_a_pending_reason_not_a_crash(
    manager: NetworkManager, tmp_path: Path, error: NetpluginError,
) -> None:
    FakeDriver.fail = error
    s = spec("mv-1", att("macnet", "macvlan", "192.168.9.5"))
    with pytest.raises(NetworkUnavailable) as info:
        await manager.before_start(s, container(tmp_path, s))
    assert str(info.value) == f"network macnet: {error}"
    assert info.value.delay == 30.0      # backoff doubles up to half a minute
    assert not isinstance(info.value, UserError | PermanentError)   # retried, never invalid


async def test_host_mode_gets_the_nodes_files_and_no_attachments(
    manager: NetworkManager, tmp_path: Path,
) -> None:
    s = spec("top-1", network_mode="host")
    ctr = container(tmp_path, s)
    await manager.before_start(s, ctr)
    assert ctr.files.hosts.read_text() == (tmp_path / "host-hosts").read_text()
    assert ctr.files.resolv_conf.read_text() == (tmp_path / "host-resolv.conf").read_text()
    assert FakeDriver.calls == [] and manager.dns.scopes == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["none", "container:web-1"])
async def test_none_and_container_modes_get_no_attachments(
    manager: NetworkManager, tmp_path: Path, mode: str,
) -> None:
    s = spec("side-1", network_mode=mode)
    ctr = container(tmp_path, s)
    await manager.before_start(s, ctr)
    await manager.ensure_running(s, ctr)
    assert FakeDriver.calls == [] and manager.dns.scopes == {}  # type: ignore[attr-defined]
    # A joiner's files are its target's (bind-mounted by the runtime): left alone.
    assert (ctr.files.hosts.read_text() == "untouched\n") is (mode != "none")
