"""The agent's network wiring with real runc containers, the real overlay and real DNS.

One node netns (tests/agentnode.py). Containers on an overlay plus the gateway bridge
resolve each other by name through 127.0.0.11 and ping over the overlay; a container only
on the default network ``bridge`` gets the node's resolvers and no embedded DNS; the
implicit networks publish no names. The bridge driver is built elsewhere, so ``bridge``
here is a stand-in that puts a veth with the attachment's address in the container and
records what it was handed (the published ports among it).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

import pytest

from agent.dns import DnsServer, Records, Upstream
from agent.network import NetworkManager
from agent.runtime.containers import Runtime
from berth import keyspace
from berth.records import ContainerSpec, NetworkAttachment, PortMapping
from netplugins.contract import (
    Attachment,
    AttachResult,
    HostContext,
    Interface,
    IPConfig,
    NetConf,
    PortMap,
    mac_from_ip,
)
from netplugins.netlink import discover_underlay
from netplugins.registry import DRIVERS, DriverEntry
from tests.agentnode import NodeNs, sh_in
from tests.unit.agent.test_reconcile import FakeKV

pytestmark = pytest.mark.integration

NODE = "an-node"
VNI = 4343


async def ip_in(netns: str, *argv: str, check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", "ip", *argv,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    if check and proc.returncode:
        raise AssertionError(f"ip {' '.join(argv)}: {err.decode()}")


class VethStub:
    """Stands in for the bridge driver: an interface with the address, nothing behind it."""

    added: ClassVar[list[tuple[Attachment, NetConf]]] = []

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    async def add(self, att: Attachment, net: NetConf) -> AttachResult:
        self.added.append((att, net))
        await ip_in(att.netns, "link", "add", att.ifname, "type", "veth",
                    "peer", "name", f"{att.ifname}p")
        await ip_in(att.netns, "addr", "add", att.cidr, "dev", att.ifname)
        await ip_in(att.netns, "link", "set", att.ifname, "up")
        return AttachResult(interfaces=(Interface(att.ifname, att.mac, sandbox=att.netns),),
                            ips=(IPConfig(att.cidr, 0, att.gateway),))

    async def check(self, att: Attachment, net: NetConf, prev: AttachResult) -> None:
        return None

    async def delete(self, att: Attachment, net: NetConf, prev: AttachResult | None) -> None:
        if att.netns:
            await ip_in(att.netns, "link", "del", att.ifname, check=False)


@dataclass
class Agent:
    rt: Runtime
    nm: NetworkManager
    kv: FakeKV
    upstream: str
    specs: list[ContainerSpec]

    async def run(self, s: ContainerSpec) -> None:
        self.specs.append(s)
        c = await self.rt.create(s)
        await self.nm.before_start(s, c)
        c = await self.rt.start(s.name)
        await self.nm.ensure_running(s, c)
        # What the endpoint watch would do: mirror what the agent published.
        self.nm.table.replace(await self.kv.get_prefix(keyspace.ENDPOINTS))


@pytest.fixture
async def agent(node_rt: Runtime, node_ns: NodeNs) -> AsyncIterator[Agent]:
    VethStub.added = []
    underlay = await discover_underlay(node_ns.ip, netns=node_ns.path)
    records = Records()
    upstream = node_ns.ip.rsplit(".", 1)[0] + ".53"     # on the node's LAN; never asked
    kv = FakeKV()
    nm = NetworkManager(
        etcd=kv, node=NODE, ctx=HostContext(underlay, host_netns=node_ns.path),
        state_dir=node_rt.state_dir, dns=DnsServer(records, (Upstream(upstream),)),
        records=records, drivers={"overlay": DRIVERS["overlay"],
                                  "bridge": DriverEntry(make_driver=VethStub)},
    )
    a = Agent(node_rt, nm, kv, upstream, [])
    try:
        yield a
    finally:
        for s in a.specs:
            await nm.before_delete(s.name, s)
        await nm.close()
        await nm.dns.close()


def on(network: str, driver: str, ip: str, prefixlen: int, **kw: object) -> NetworkAttachment:
    gateway = ip.rsplit(".", 1)[0] + ".1"
    return NetworkAttachment(network=network, driver=driver, ip=ip, prefixlen=prefixlen,
                             gateway=gateway, mac=mac_from_ip(ip), **kw)  # type: ignore[arg-type]


def spec(name: str, *networks: NetworkAttachment, **kw: object) -> ContainerSpec:
    return ContainerSpec(name=name, service=name.rsplit("-", 1)[0], node=NODE,
                         image="busybox", command=("sleep", "3600"), networks=networks,
                         **kw)  # type: ignore[arg-type]


def api(n: int) -> ContainerSpec:
    return spec(f"api-{n}", on("appnet", "overlay", f"10.42.0.{n + 1}", 24, vni=VNI),
                on("berth-gwbridge", "bridge", f"172.18.0.{n + 1}", 16, default_route=True),
                ports=(PortMapping(container_port=80, host_port=8080 + n),))


async def nslookup(a: Agent, container: str, name: str) -> tuple[int, str]:
    proc = await a.rt.exec(container, ["nslookup", name, "127.0.0.11"])
    out = b"".join([chunk async for _, chunk in proc])
    return await proc, out.decode()


async def test_overlay_names_resolve_and_implicit_networks_have_none(agent: Agent) -> None:
    for s in (api(1), api(2),
              spec("solo-1", on("bridge", "bridge", "172.17.0.2", 16, default_route=True))):
        await agent.run(s)

    # Only the overlay endpoints are published; the implicit networks have no names.
    assert sorted(k for k in agent.kv.data if k.startswith(keyspace.ENDPOINTS)) == [
        keyspace.endpoint(agent.nm.node, "appnet", "api-1"),
        keyspace.endpoint(agent.nm.node, "appnet", "api-2")]
    assert await sh_in(agent.rt, "api-1", "cat /etc/resolv.conf") == (
        "nameserver 127.0.0.11\noptions ndots:0\n")
    code, out = await nslookup(agent, "api-1", "api-2")
    assert code == 0 and "10.42.0.3" in out, out
    assert "bytes from 10.42.0.3" in await sh_in(agent.rt, "api-1", "ping -c1 -W2 api-2")
    code, out = await nslookup(agent, "api-1", "solo-1")
    assert code != 0 and "172.17.0.2" not in out

    # The default network alone: the node's resolvers, no resolver at 127.0.0.11.
    resolv = await sh_in(agent.rt, "solo-1", "cat /etc/resolv.conf")
    assert f"nameserver {agent.upstream}" in resolv and "127.0.0.11" not in resolv
    assert set(agent.nm.dns.attached()) == {"api-1", "api-2"}
    code, _ = await nslookup(agent, "solo-1", "api-1")
    assert code != 0

    # Ports went to the default-route attachment only, with its NetConf.
    handed = {(a.container_name, n.name): a for a, n in VethStub.added}
    assert handed["api-1", "berth-gwbridge"].ports == (PortMap(host_port=8081, container_port=80),)
    assert handed["api-1", "berth-gwbridge"].default_route
    assert handed["solo-1", "bridge"].ports == ()
