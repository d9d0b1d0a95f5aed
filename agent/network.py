"""Container networking on one node: drivers, per-network host objects, endpoints, DNS.

The reconciler calls the hooks (``before_start``, ``ensure_running``,
``on_stopped``, ``before_delete``); this module turns them into driver ADD/CHECK/DEL
calls, keeps one NetworkHost task per network that has local endpoints,
publishes this node's endpoints to etcd and keeps the embedded DNS in step.

Order matters twice. A container's endpoint is published only after ADD made its
interface, and peers program neighbour/FDB entries before they serve its name
(see agent.endpoints). On the way down the endpoint is withdrawn first, so peers
stop resolving the name before the interface disappears.

All work on one network (host object start and stop, ADD, CHECK, DEL) runs under
that network's lock: two containers joining a new network at once must share one
host object, and a teardown must not race a container joining.

Decisions are the controller's (docs/networks-design.md); this module carries them
out. Each driver gets its NetConf from the attachment alone (``internal``, ``options``
and ``mtu`` are copied in), and the published ports ride on the one ``default_route``
attachment. What ADD used is stored (agent.netresults), so DEL works without a spec.

DNS by name, as Docker has it:
- The implicit networks (``bridge``, ``berth-gwbridge``) have none: their endpoints are
  not published, and a container with nothing else gets the node's resolvers in its
  resolv.conf instead of 127.0.0.11 (docker0's behaviour).
- On a node-local (bridge-driver) network, names resolve between containers of that
  network on the same node only: a host object there is given only this node's
  endpoints, and other nodes' names are never served.

network_mode: ``none`` gets no attachments, ``host`` the node's own /etc/hosts and
resolv.conf, ``container:X`` nothing at all (it shares X's netns, files and resolver).
A driver error out of ADD leaves the container pending with the driver's words
(NetworkUnavailable) and the reconciler retries with backoff.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.dns import DnsServer, InvalidRecord, Records, hosts_file, resolv_conf
from agent.dns.files import upstream_resolv_conf
from agent.endpoints import EndpointTable, NetworkPeers, peer_of
from agent.errors import NetworkUnavailable
from agent.hooks import ContainerHooks
from agent.netresults import ResultStore, Stored
from agent.ports import KeyValue
from agent.runtime.bundle import rewrite_file
from agent.runtime.containers import Container
from agent.runtime.netmode import parse_network_mode
from berth import keyspace
from berth.manifest_model import DEFAULT_NETWORK, GATEWAY_NETWORK
from berth.records import ContainerSpec, Endpoint, NetworkAttachment
from netplugins.contract import (
    Attachment,
    ContainerId,
    HostContext,
    NetConf,
    NetworkHost,
    PortMap,
)
from netplugins.errors import CheckFailedError, NetpluginError
from netplugins.registry import DRIVERS, DriverEntry, lookup

log = logging.getLogger(__name__)

# Networks without DNS by name (Docker's docker0 and docker_gwbridge).
IMPLICIT_NETWORKS = frozenset({DEFAULT_NETWORK, GATEWAY_NETWORK})
# Drivers whose endpoints live on one node only: each node has its own bridge and reuses
# the subnet, so another node's endpoint on the same network name is not a peer.
NODE_LOCAL_DRIVERS = frozenset({"bridge"})
# The longest wait between retries of an ADD a driver refused (backoff doubles up to it).
UNAVAILABLE_RETRY = 30.0
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


def network_spec(att: NetworkAttachment, implicit_mtu: int = 0) -> NetConf:
    """The driver's NetConf; ``implicit_mtu`` (the agent's ``mtu``, 0: none) is the MTU of
    the implicit networks (``bridge``, ``berth-gwbridge``), as dockerd's ``mtu`` is docker0's."""
    subnet = ipaddress.ip_interface(f"{att.ip}/{att.prefixlen}").network
    mtu = att.mtu or (implicit_mtu if att.network in IMPLICIT_NETWORKS else 0)
    return NetConf(
        name=att.network, driver=att.driver, subnet=str(subnet), gateway=att.gateway,
        vni=att.vni, mtu=mtu, options=dict(att.options), internal=att.internal,
    )  # fmt: skip


def dns_scope(spec: ContainerSpec) -> frozenset[str]:
    """The networks whose names the container resolves: all but the implicit ones."""
    return frozenset(a.network for a in spec.networks) - IMPLICIT_NETWORKS


def port_maps(spec: ContainerSpec) -> tuple[PortMap, ...]:
    return tuple(PortMap(host_port=p.host_port, container_port=p.container_port,
                         protocol=p.protocol, host_ip=p.host_ip) for p in spec.ports)


def ifnames(spec: ContainerSpec) -> dict[str, str]:
    """eth0, eth1, ... by network name: stable across restarts and for DEL."""
    return {net: f"eth{i}" for i, net in enumerate(sorted(a.network for a in spec.networks))}


def attachment(spec: ContainerSpec, att: NetworkAttachment, netns: str) -> Attachment:
    return Attachment(
        container_id=ContainerId(spec.name), container_name=spec.name, netns=netns,
        ip=att.ip, prefixlen=att.prefixlen, mac=att.mac, ifname=ifnames(spec)[att.network],
        gateway=att.gateway, aliases=att.aliases, default_route=att.default_route,
        # Published ports go to the default-route attachment only (the controller's rule).
        ports=port_maps(spec) if att.default_route else (),
    )  # fmt: skip


def stored_attachment(name: str, stored: Stored) -> Attachment:
    """The attachment ADD made, from what it stored (for DEL without a spec)."""
    if stored.attachment is not None:
        return replace(stored.attachment, netns="")
    ip, prefixlen = "", 0
    if stored.result.ips:
        iface = ipaddress.ip_interface(stored.result.ips[0].address)
        ip, prefixlen = str(iface.ip), iface.network.prefixlen
    inside = next((i for i in stored.result.interfaces if i.sandbox), None)
    return Attachment(
        container_id=ContainerId(name), container_name=name, netns="", ip=ip,
        prefixlen=prefixlen, mac=inside.mac if inside else "", ifname=stored.ifname or "eth0",
    )  # fmt: skip


@dataclass
class _HostRun:
    host: NetworkHost
    peers: NetworkPeers
    task: asyncio.Task[None]


@dataclass
class NetworkManager(ContainerHooks):
    etcd: KeyValue
    node: str
    ctx: HostContext
    state_dir: Path
    dns: DnsServer
    records: Records = field(default_factory=Records)
    drivers: Mapping[str, DriverEntry] = field(default_factory=lambda: DRIVERS)
    # The host's files a host-mode container gets, and whose search/options lines a
    # container without embedded DNS keeps (tests point these elsewhere).
    host_resolv_conf: Path = HOST_RESOLV_CONF
    host_hosts: Path = HOST_HOSTS
    implicit_mtu: int = 0          # the agent's ``mtu``: network_spec
    _hosts: dict[str, _HostRun] = field(default_factory=dict)
    _node_local: set[str] = field(default_factory=set)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _published: dict[tuple[str, str], tuple[Endpoint, int]] = field(default_factory=dict)
    _checked: set[str] = field(default_factory=set)
    table: EndpointTable = field(init=False)
    results: ResultStore = field(init=False)

    def __post_init__(self) -> None:
        self.table = EndpointTable(on_change=self.refresh_dns, node=self.node)
        self.results = ResultStore(self.state_dir / "netresults")

    def _lock(self, network: str) -> asyncio.Lock:
        return self._locks.setdefault(network, asyncio.Lock())

    def _entry(self, driver: str) -> DriverEntry:
        return lookup(driver, self.drivers)

    async def run(self) -> None:
        await self.table.follow(self.etcd)

    async def remove_stale(self) -> None:
        """At start, before any container work: host state of networks that no local
        container uses any more (deleted while the agent was down) is removed."""
        keep = self.results.networks()
        for name, entry in sorted(self.drivers.items()):
            if entry.cleanup is not None:
                for gone in await entry.cleanup(self.ctx, keep):
                    log.info("removed %s host state %s: no container uses it", name, gone)

    async def close(self) -> None:
        runs, self._hosts = list(self._hosts.values()), {}
        for run in runs:
            run.task.cancel()
        await asyncio.gather(*(r.task for r in runs), return_exceptions=True)

    # -- DNS -----------------------------------------------------------------

    def refresh_dns(self) -> None:
        """Local names at once; remote names once their peer entries are programmed."""
        visible = []
        for ep in self.table.all():
            if ep.network in IMPLICIT_NETWORKS:
                continue        # no DNS by name there, whoever published it
            if ep.node == self.node:
                visible.append(ep)
                continue
            run = self._hosts.get(ep.network)
            if (ep.network not in self._node_local and run
                    and peer_of(ep) in run.peers.programmed_peers):
                visible.append(ep)
        try:
            self.records.replace_all(visible)
        except InvalidRecord:
            # One bad record must not hide every good one (nor crash the watch).
            self.records.replace_all([ep for ep in visible if _valid(ep)])

    # -- per-network host objects (call with the network's lock held) -----------

    async def _ensure_host(self, net: NetConf) -> None:
        if net.driver in NODE_LOCAL_DRIVERS:
            self._node_local.add(net.name)
        if net.name in self._hosts:
            return
        entry = self._entry(net.driver)
        if entry.make_host is None:
            return
        host = entry.make_host(net, self.ctx)
        await host.ensure()
        local_only = self.node if net.name in self._node_local else None
        peers = NetworkPeers(self.table, net.name, self.refresh_dns, node=local_only)
        task = asyncio.create_task(host.run(peers), name=f"net-{net.name}")
        self._hosts[net.name] = _HostRun(host, peers, task)

    async def _release_host_if_unused(self, network: str) -> None:
        if network not in self._hosts or self.results.in_use(network):
            return
        if any(net == network for net, _ in self._published):
            return
        run = self._hosts.pop(network)
        self._node_local.discard(network)
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
        await run.host.teardown()
        self.refresh_dns()

    # -- hooks ------------------------------------------------------------------

    async def before_start(self, spec: ContainerSpec, container: Container) -> None:
        mode = parse_network_mode(spec)
        if mode.kind == "container":
            return      # X's netns, /etc files and resolver are shared (agent.runtime)
        if mode.kind == "host":
            self._write_host_files(container)
            self._checked.add(spec.name)
            return
        netns = f"/proc/{container.pid}/ns/net"
        for att in spec.networks:
            async with self._lock(att.network):
                await self._add_or_pending(spec, att, netns)
        ips = [a.ip for a in spec.networks if a.ip]
        rewrite_file(container.files.hosts, hosts_file(spec.name, ips))
        scope = dns_scope(spec)
        if scope:
            rewrite_file(container.files.resolv_conf, resolv_conf())
            await self.dns.attach(spec.name, netns, scope)
        else:
            rewrite_file(container.files.resolv_conf,
                         upstream_resolv_conf(self.dns.upstreams, _read(self.host_resolv_conf)))
        self._checked.add(spec.name)

    def _write_host_files(self, container: Container) -> None:
        """``network_mode: host``: the node's own /etc/hosts and resolv.conf, as Docker."""
        for src, dst in ((self.host_hosts, container.files.hosts),
                         (self.host_resolv_conf, container.files.resolv_conf)):
            text = _read(src)
            if text:
                rewrite_file(dst, text)

    async def _add_or_pending(self, spec: ContainerSpec, att: NetworkAttachment,
                              netns: str) -> None:
        """ADD; whatever the driver refuses means "not on this node, not now"."""
        try:
            await self._add(spec, att, netns)
        except NetpluginError as exc:
            # Doubling waits up to this: a parent that appears is found within half a
            # minute, and a node that cannot run it is not asked every second.
            raise NetworkUnavailable(att.network, str(exc), delay=UNAVAILABLE_RETRY) from exc

    async def _add(self, spec: ContainerSpec, att: NetworkAttachment, netns: str) -> None:
        net = network_spec(att, self.implicit_mtu)
        await self._ensure_host(net)
        driver = self._entry(net.driver).make_driver(self.ctx)
        added = attachment(spec, att, netns)
        result = await driver.add(added, net)
        self.results.store(spec.name, att.network, result, net, added)

    async def ensure_running(self, spec: ContainerSpec, container: Container) -> None:
        """Every pass for a running container: check once per agent life, publish, DNS."""
        netns = f"/proc/{container.pid}/ns/net"
        if spec.name not in self._checked:
            for att in spec.networks:
                async with self._lock(att.network):
                    await self._verify(spec, att, netns)
            scope = dns_scope(spec)
            if scope:
                await self.dns.attach(spec.name, netns, scope)
            self._checked.add(spec.name)
        for att in spec.networks:
            if att.network not in IMPLICIT_NETWORKS:
                await self._publish(spec, att)

    async def _verify(self, spec: ContainerSpec, att: NetworkAttachment, netns: str) -> None:
        net = network_spec(att, self.implicit_mtu)
        await self._ensure_host(net)
        prev = self.results.load(spec.name, att.network)
        driver = self._entry(net.driver).make_driver(self.ctx)
        if prev is not None:
            try:
                await driver.check(attachment(spec, att, netns), net, prev)
                return
            except CheckFailedError as exc:
                log.warning("%s on %s: %s; re-adding", spec.name, att.network, exc)
            await driver.delete(attachment(spec, att, netns), net, prev)
        await self._add(spec, att, netns)

    async def _publish(self, spec: ContainerSpec, att: NetworkAttachment) -> None:
        """Write the endpoint unless etcd already holds exactly it (level-triggered)."""
        ep = Endpoint(
            network=att.network, container=spec.name, service=spec.service, node=self.node,
            ip=att.ip, mac=att.mac, host_ip=self.ctx.underlay.ip, aliases=att.aliases,
        )  # fmt: skip
        key = (att.network, spec.name)
        mine = self._published.get(key)
        if mine is not None and mine[0] == ep:
            seen = self.table.written(self.node, *key)
            # The mirror may lag our own write; only a newer view that differs counts.
            if seen == ep or self.table.revision < mine[1]:
                return
        revision = await self.etcd.put(keyspace.endpoint(self.node, *key), ep.dumps())
        self._published[key] = (ep, revision)

    async def _unpublish(self, name: str, networks: list[str]) -> None:
        for network in networks:
            # Our own key: the same name on another node is under that node's prefix.
            if ((network, name) in self._published
                    or self.table.written(self.node, network, name) is not None):
                await self.etcd.delete(keyspace.endpoint(self.node, network, name))
            self._published.pop((network, name), None)

    async def on_stopped(self, spec: ContainerSpec) -> None:
        """The container exited: its names go away, its interfaces stay until delete."""
        await self._unpublish(spec.name, [a.network for a in spec.networks])
        if spec.name in self._checked or spec.name in self.dns.attached():
            await self.dns.detach(spec.name)
        self._checked.discard(spec.name)

    async def before_delete(self, name: str, spec: ContainerSpec | None) -> None:
        atts = {a.network: a for a in spec.networks} if spec else {}
        networks = sorted(set(self.results.networks_of(name)) | set(atts))
        await self._unpublish(name, networks)
        await self.dns.detach(name)
        self._checked.discard(name)
        for network in networks:
            async with self._lock(network):
                await self._delete_one(name, network, spec, atts.get(network))
                await self._release_host_if_unused(network)

    async def _delete_one(
        self, name: str, network: str, spec: ContainerSpec | None, att: NetworkAttachment | None
    ) -> None:
        """DEL from the spec when there is one, else from what ADD stored (CNI's DEL)."""
        stored = self.results.load_stored(name, network)
        if spec is not None and att is not None:
            net, target = network_spec(att, self.implicit_mtu), attachment(spec, att, "")
        elif stored is not None and stored.net is not None:
            net, target = stored.net, stored_attachment(name, stored)
        else:
            log.warning("%s: nothing says how network %s was attached; dropping its record",
                        name, network)
            self.results.remove(name, network)
            return
        driver = self._entry(net.driver).make_driver(self.ctx)
        await driver.delete(target, net, stored.result if stored else None)
        self.results.remove(name, network)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return ""


def _valid(ep: Endpoint) -> bool:
    try:
        Records().set_endpoint(ep.network, ep.container, ep.service, ep.ip, ep.aliases)  # type: ignore[arg-type]
    except InvalidRecord:
        log.warning("ignoring endpoint %s/%s with a bad name or address", ep.network, ep.container)
        return False
    return True
