"""Container networking on one node: drivers, per-network host objects, endpoints, DNS.

The reconciler calls the hooks (``before_start``, ``ensure_running``,
``on_stopped``, ``before_delete``); this module turns them into driver ADD/CHECK/DEL
calls, keeps one NetworkHost task per network that has local endpoints,
publishes this node's endpoints to etcd and keeps the embedded DNS in step.

Order matters twice. A container's endpoint is published only after ADD made its
interface, and peers program neighbour/FDB entries before they serve its name
(see agent.endpoints). On the way down the endpoint is withdrawn first, so peers
stop resolving the name before the interface disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

from agent.dns import DnsServer, Records, hosts_file, resolv_conf
from agent.endpoints import EndpointTable, NetworkPeers, peer_of
from agent.hooks import ContainerHooks
from agent.runtime.bundle import rewrite_file
from agent.runtime.containers import Container
from berth import keyspace
from berth.etcd import Etcd3Client
from berth.records import ContainerSpec, Endpoint, NetworkAttachment
from netplugins.contract import (
    Attachment,
    AttachResult,
    ContainerId,
    HostContext,
    NetworkHost,
    NetworkSpec,
)
from netplugins.errors import CheckFailedError
from netplugins.registry import lookup

log = logging.getLogger(__name__)


def network_spec(att: NetworkAttachment) -> NetworkSpec:
    subnet = ipaddress.ip_interface(f"{att.ip}/{att.prefixlen}").network
    return NetworkSpec(
        name=att.network, driver=att.driver, subnet=str(subnet), gateway=att.gateway, vni=att.vni
    )


def attachment(spec: ContainerSpec, att: NetworkAttachment, netns: str) -> Attachment:
    return Attachment(
        container_id=ContainerId(spec.name),
        container_name=spec.name,
        netns=netns,
        ip=att.ip,
        prefixlen=att.prefixlen,
        mac=att.mac,
        gateway=att.gateway,
        aliases=att.aliases,
    )


@dataclass
class _HostRun:
    host: NetworkHost
    peers: NetworkPeers
    task: asyncio.Task[None]


@dataclass
class NetworkManager(ContainerHooks):
    etcd: Etcd3Client
    node: str
    ctx: HostContext
    state_dir: Path
    dns: DnsServer
    records: Records = field(default_factory=Records)
    _hosts: dict[str, _HostRun] = field(default_factory=dict)
    _published: dict[tuple[str, str], Endpoint] = field(default_factory=dict)
    _checked: set[str] = field(default_factory=set)
    table: EndpointTable = field(init=False)

    def __post_init__(self) -> None:
        self.table = EndpointTable(on_change=self.refresh_dns)

    # -- DNS -----------------------------------------------------------------

    def refresh_dns(self) -> None:
        """Local names at once; remote names once their peer entries are programmed."""
        visible = []
        for ep in self.table.all():
            run = self._hosts.get(ep.network)
            if ep.node == self.node or (run and peer_of(ep) in run.peers.programmed_peers):
                visible.append(ep)
        self.records.replace_all(visible)

    # -- per-network host objects -------------------------------------------

    async def _ensure_host(self, net: NetworkSpec) -> None:
        if net.name in self._hosts:
            return
        entry = lookup(net.driver)
        if entry.make_host is None:
            return
        host = entry.make_host(net, self.ctx)
        await host.ensure()
        peers = NetworkPeers(self.table, net.name, self.refresh_dns)
        task = asyncio.create_task(host.run(peers), name=f"net-{net.name}")
        self._hosts[net.name] = _HostRun(host, peers, task)

    async def _release_host_if_unused(self, network: str) -> None:
        if any(net == network for net, _ in self._published) or network not in self._hosts:
            return
        if any(r.exists() for r in self._results_dir().glob(f"*/{network}.json")):
            return
        run = self._hosts.pop(network)
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run.task
        await run.host.teardown()
        self.refresh_dns()

    async def run(self) -> None:
        await self.table.follow(self.etcd)

    # -- stored results -------------------------------------------------------

    def _results_dir(self) -> Path:
        return self.state_dir / "netresults"

    def _result_path(self, container: str, network: str) -> Path:
        return self._results_dir() / container / f"{network}.json"

    def _load_result(self, container: str, network: str) -> AttachResult | None:
        path = self._result_path(container, network)
        try:
            return AttachResult.from_json(path.read_bytes())
        except (OSError, ValueError):
            return None

    def _store_result(self, container: str, network: str, result: AttachResult) -> None:
        path = self._result_path(container, network)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(result.to_json())
        tmp.replace(path)

    # -- hooks ------------------------------------------------------------------

    async def before_start(self, spec: ContainerSpec, container: Container) -> None:
        netns = f"/proc/{container.pid}/ns/net"
        for att in spec.networks:
            await self._add(spec, att, netns)
        await self._write_files(spec, container)
        if spec.networks:
            await self.dns.attach(spec.name, netns, {a.network for a in spec.networks})
        self._checked.add(spec.name)

    async def _add(self, spec: ContainerSpec, att: NetworkAttachment, netns: str) -> None:
        net = network_spec(att)
        await self._ensure_host(net)
        driver = lookup(net.driver).make_driver(self.ctx)
        result = await driver.add(attachment(spec, att, netns), net)
        self._store_result(spec.name, att.network, result)

    async def _write_files(self, spec: ContainerSpec, container: Container) -> None:
        ips = [a.ip for a in spec.networks if a.ip]
        rewrite_file(container.files.hosts, hosts_file(spec.name, ips))
        if spec.networks:
            rewrite_file(container.files.resolv_conf, resolv_conf())

    async def ensure_running(self, spec: ContainerSpec, container: Container) -> None:
        """Every pass for a running container: check once per agent life, publish, DNS."""
        netns = f"/proc/{container.pid}/ns/net"
        if spec.name not in self._checked:
            for att in spec.networks:
                await self._verify(spec, att, netns)
            if spec.networks:
                await self.dns.attach(spec.name, netns, {a.network for a in spec.networks})
            self._checked.add(spec.name)
        for att in spec.networks:
            await self._publish(spec, att)

    async def _verify(self, spec: ContainerSpec, att: NetworkAttachment, netns: str) -> None:
        net = network_spec(att)
        await self._ensure_host(net)
        prev = self._load_result(spec.name, att.network)
        driver = lookup(net.driver).make_driver(self.ctx)
        if prev is not None:
            try:
                await driver.check(attachment(spec, att, netns), net, prev)
                return
            except CheckFailedError as exc:
                log.warning("%s on %s: %s; re-adding", spec.name, att.network, exc)
            await driver.delete(attachment(spec, att, netns), net, prev)
        await self._add(spec, att, netns)

    async def _publish(self, spec: ContainerSpec, att: NetworkAttachment) -> None:
        ep = Endpoint(
            network=att.network,
            container=spec.name,
            service=spec.service,
            node=self.node,
            ip=att.ip,
            mac=att.mac,
            host_ip=self.ctx.underlay.ip,
            aliases=att.aliases,
        )
        if self._published.get((att.network, spec.name)) == ep:
            return
        await self.etcd.put(keyspace.endpoint(att.network, spec.name), ep.dumps())
        self._published[(att.network, spec.name)] = ep

    async def _unpublish(self, name: str, networks: list[str]) -> None:
        for network in networks:
            await self.etcd.delete(keyspace.endpoint(network, name))
            self._published.pop((network, name), None)

    async def on_stopped(self, spec: ContainerSpec) -> None:
        """The container exited: its names go away, its interfaces stay until delete."""
        await self._unpublish(spec.name, [a.network for a in spec.networks])
        await self.dns.detach(spec.name)
        self._checked.discard(spec.name)

    async def before_delete(self, name: str, spec: ContainerSpec | None) -> None:
        stored = sorted(p.stem for p in (self._results_dir() / name).glob("*.json"))
        atts = {a.network: a for a in spec.networks} if spec else {}
        networks = sorted(set(stored) | set(atts))
        await self._unpublish(name, networks)
        await self.dns.detach(name)
        for network in networks:
            await self._delete_one(name, network, atts.get(network))
        with contextlib.suppress(OSError):
            (self._results_dir() / name).rmdir()
        self._checked.discard(name)
        for network in networks:
            await self._release_host_if_unused(network)

    async def _delete_one(self, name: str, network: str, att: NetworkAttachment | None) -> None:
        prev = self._load_result(name, network)
        if att is None:
            self._result_path(name, network).unlink(missing_ok=True)
            log.warning(
                "%s: no spec for network %s; removing its stored result only", name, network
            )
            return
        net = network_spec(att)
        driver = lookup(net.driver).make_driver(self.ctx)
        fake = ContainerSpec(name=name, service="", node=self.node, image="")
        await driver.delete(attachment(fake, att, ""), net, prev)
        self._result_path(name, network).unlink(missing_ok=True)

    async def close(self) -> None:
        for run in self._hosts.values():
            run.task.cancel()
        await asyncio.gather(*(r.task for r in self._hosts.values()), return_exceptions=True)
