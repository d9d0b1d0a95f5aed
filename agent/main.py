"""berth-agent: the node agent's entry point and task wiring.

Starts the runtime (adopting containers left running by a previous agent),
registers the node under a lease, serves the agent gRPC API and runs the
reconcile loop with its assignment watch. Only ``main`` exits the process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from agent import config as agent_config
from agent import hostfacts, implicitnets, nodeports
from agent.dns import DnsServer, Records, Upstream
from agent.imagestream import load_stream
from agent.network import NetworkManager
from agent.reconcile import Reconciler
from agent.registration import Registration, host_prefixes, node_record
from agent.runtime.containers import Runtime
from agent.runtime.layerstore import ensure_private_dir
from agent.runtime.logrotate import DEFAULT_LIMITS, LogLimits
from agent.server import AgentService
from berth import authz, grpcopts, metrics
from berth.daemon import run_daemon
from berth.errors import UserError
from berth.etcd import Etcd3Client
from berth.imagelimits import MAX_ARCHIVE_BYTES
from berth.manifest_model import DEFAULT_NETWORK, GATEWAY_NETWORK
from berth.records import NodeRecord
from berth.tls import TlsSettings
from berth.tls import channel as tlschannel
from netplugins.contract import HostContext, Underlay
from netplugins.firewall.nodeports import keep_node_ports
from netplugins.netlink import discover_underlay
from protos import agent_pb2_grpc, controller_pb2, controller_pb2_grpc

log = logging.getLogger("berth.agent")


class ImagePuller:
    """Fetches an image archive the node lacks from the controller, then loads it."""

    def __init__(self, controller: str, runtime: Runtime, scratch: Path,
                 tls: TlsSettings | None = None, limit: int = MAX_ARCHIVE_BYTES) -> None:
        self._controller = controller
        self._tls = tls
        self._runtime = runtime
        self._scratch = scratch
        self._limit = limit

    async def __call__(self, ref: str) -> None:
        if not self._controller:
            return
        try:
            async with tlschannel(
                self._controller, self._tls, grpcopts.channel_options()
            ) as channel:
                stub = controller_pb2_grpc.ControllerStub(channel)
                frames = stub.ImagePull(controller_pb2.ImagePullRequest(ref=ref))
                await load_stream(self._runtime.images, frames, self._scratch, self._limit)
        except grpc.aio.AioRpcError as exc:
            log.warning("pull %s from controller failed: %s", ref, exc.details())


async def _serve(
    cfg: agent_config.AgentConfig, runtime: Runtime, network: NetworkManager
) -> grpc.aio.Server:
    server = authz.make_server(cfg.tls, "berth-agent")
    service = AgentService(runtime, cfg.state_dir / "tmp", network,
                           max_archive=cfg.max_archive_bytes)
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if authz.add_port(server, cfg.listen, cfg.tls) == 0:
        raise UserError(f"cannot listen on {cfg.listen}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server


async def _underlay(cfg: agent_config.AgentConfig) -> Underlay:
    underlay = await discover_underlay(cfg.underlay_ip)
    if underlay.ifname != cfg.underlay_dev:
        raise UserError(
            f"--underlay-ip {cfg.underlay_ip} is on {underlay.ifname}, not on "
            f"--underlay-dev {cfg.underlay_dev}"
        )
    return underlay


async def _supervised(name: str, factory: Callable[[], Awaitable[None]]) -> None:
    """Run a long-lived task again, with backoff, if it fails: a blip must not end the agent."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception), wait=wait_exponential(multiplier=0.2, max=5)
    ):
        with attempt:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting it", name)
                raise


def _network(
    cfg: agent_config.AgentConfig, etcd: Etcd3Client, underlay: Underlay
) -> NetworkManager:
    upstreams = None
    if cfg.dns_upstreams is not None:
        upstreams = tuple(Upstream(ip) for ip in cfg.dns_upstreams)
    records = Records()
    ctx = HostContext(underlay)
    return NetworkManager(
        etcd=etcd,
        node=cfg.node,
        ctx=ctx,
        state_dir=cfg.state_dir,
        dns=DnsServer(records, upstreams),
        records=records,
        implicit_mtu=cfg.mtu,
    )


async def _node_record(cfg: agent_config.AgentConfig, underlay: Underlay) -> NodeRecord:
    """The node as announced: its own prefixes and the implicit networks' gateways."""
    addresses, routes = await host_prefixes()
    previous = implicitnets.load_previous(cfg.state_dir)
    addresses = implicitnets.without_own(addresses, previous)
    routes = implicitnets.without_own(routes, previous)
    record = node_record(cfg.node, cfg.underlay_ip, cfg.advertise, mtu=underlay.mtu,
                         addresses=addresses, routes=routes)
    nets = implicitnets.choose(cfg.bip, cfg.gwbridge_bip, record.overlap)
    implicitnets.save(cfg.state_dir, nets)
    log.info("default network %s: %s; gateway bridge %s: %s",
             DEFAULT_NETWORK, nets.bip, GATEWAY_NETWORK, nets.gwbridge)
    facts = await hostfacts.probe(cfg.runtime_bin)
    log.info("host: kernel %s, cgroup %s, runtime %s; drivers: %s", facts.kernel,
             facts.cgroup, facts.runtime,
             ", ".join(f"{d.name} ({d.reason})" if d.reason else d.name for d in facts.drivers))
    return record.model_copy(update={"bip": nets.bip, "gwbridge": nets.gwbridge,
                                     "labels": dict(cfg.labels), "facts": facts})


def _check_identity(cfg: agent_config.AgentConfig) -> None:
    """An agent acts only as the node its certificate names: refuse any other --node."""
    if cfg.tls is not None and (cn := cfg.tls.common_name()) != f"node:{cfg.node}":
        raise UserError(f"--tlscert {cfg.tls.cert}: its CN is {cn!r}, but this agent is "
                        f"--node {cfg.node} (CN 'node:{cfg.node}' expected)")


async def run(cfg: agent_config.AgentConfig) -> None:
    _check_identity(cfg)
    # Root-only, also for an existing install: the state dir holds image layers (setuid
    # binaries included) and container roots, which no host user may reach.
    ensure_private_dir(cfg.state_dir)
    runtime = Runtime(
        state_dir=cfg.state_dir,
        runtime_root=cfg.runtime_root,
        cgroup_parent=cfg.cgroup_parent,
        runtime_bin=cfg.runtime_bin,
        log_limits=LogLimits(cfg.log_opts.max_size or DEFAULT_LIMITS.max_size,
                             cfg.log_opts.max_file or DEFAULT_LIMITS.max_files),
    )
    etcd = cfg.etcd.client()
    underlay = await _underlay(cfg)
    # Before anything listens: a --bip on the node's own LAN ends the start here.
    record = await _node_record(cfg, underlay)
    metrics_server = metrics.serve(cfg.metrics_listen) if cfg.metrics_listen else None
    async with etcd:
        network = _network(cfg, etcd, underlay)
        # Before anything listens or any container runs: berth's and etcd's ports are
        # closed to containers (netplugins.firewall.nodeports); the rules outlive the agent.
        firewall, closed = network.ctx.firewall, nodeports.node_ports(cfg)
        static_peers = nodeports.static_peers(cfg)
        await firewall.ensure_node_ports(closed.with_peers(static_peers))
        log.info("closed to containers: tcp %s, udp %s", sorted(closed.tcp), sorted(closed.udp))
        await network.remove_stale()
        server = await _serve(cfg, runtime, network)
        registration = Registration(etcd, record, cfg.lease_ttl)
        puller = ImagePuller(cfg.controller, runtime, cfg.state_dir / "tmp", cfg.tls,
                             cfg.max_archive_bytes)
        reconciler = Reconciler(
            etcd=etcd, runtime=runtime, node=cfg.node, pull_image=puller, hooks=network
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [
            asyncio.create_task(registration.run(), name="registration"),
            asyncio.create_task(_supervised("reconcile", reconciler.run), name="reconcile"),
            asyncio.create_task(_supervised("assignment watch", reconciler.watch), name="watch"),
            asyncio.create_task(_supervised("endpoint watch", network.run), name="endpoints"),
            asyncio.create_task(
                _supervised("log rotation", runtime.rotate_logs_forever), name="logrotate"
            ),
            asyncio.create_task(
                _supervised("node ports", lambda: keep_node_ports(firewall)),
                name="nodeports",
            ),
            asyncio.create_task(
                _supervised("node ports on peers", lambda: nodeports.follow_peers(
                    etcd, firewall, closed, static_peers)),
                name="nodeports-peers",
            ),
        ]
        log.info("agent %s serving on %s", cfg.node, cfg.listen)
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        # With live-restore (the default) containers are deliberately left running.
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if waiter in done and not cfg.live_restore:
            await stop_containers(runtime)
        await network.close()
        await network.dns.close()
        await server.stop(grace=1)
        if metrics_server is not None:
            metrics_server.stop()
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def stop_containers(runtime: Runtime) -> None:
    """live-restore off: a clean exit stops this node's containers, as dockerd's does.

    They stay (stopped) on the node; the next agent starts them again as the desired
    state says.
    """
    running = [c.name for c in await runtime.list() if c.pid]
    log.info("live-restore is off: stopping %d container(s)", len(running))
    results = await asyncio.gather(*(runtime.stop(name) for name in running),
                                   return_exceptions=True)
    for name, result in zip(running, results, strict=True):
        if isinstance(result, Exception):
            log.warning("stopping %s: %s", name, result)


def main(argv: list[str] | None = None) -> None:
    def start() -> Coroutine[Any, Any, None]:
        # Parsed inside so a bad flag or config file exits through the same path.
        cfg = agent_config.parse(argv)
        logging.getLogger().setLevel(cfg.log_level)
        log.debug("configuration: %s", cfg)
        return run(cfg)

    run_daemon("berth-agent", "INFO", start)


if __name__ == "__main__":
    main()
