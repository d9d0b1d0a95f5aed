"""The controller's half of ``clusterctl netcheck``: who is on each network, and each
node's facts about it.

server.py's NetCheck calls ``netcheck``. From one consistent read of the cluster it lists,
per network, the containers that run on it (assignment + a running status from the
assigned node), and asks the agent of every node with such a container for its facts
(Agent.NetDiag), up to ``PARALLEL`` nodes at once. The facts are gathered before
clusterctl probes, so they show the state the probes meet: an agent's resync can only
repair things, so an entry missing when a probe fails was missing here too.

Networks come from the assignments' attachments, so the implicit node-local ones
(``bridge``, ``berth-gwbridge``), which have no document, are listed too. A node whose
agent does not answer gets an ``error`` instead of facts; the check goes on.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import defaultdict
from collections.abc import Iterable

import grpc

from berth.errors import NotFoundError
from berth.lifecycle import ContainerState
from berth.records import ContainerSpec, NetworkAttachment
from controller.proxy import PLAINTEXT, AgentDialer, agent_stub
from controller.state import ClusterState
from protos import netcheck_pb2

NETDIAG_TIMEOUT = 10.0      # seconds per agent; a node that is slower is reported, not waited on
PARALLEL = 16               # NetDiag calls in flight at once


def _subnet(att: NetworkAttachment) -> str:
    if not att.ip or not att.prefixlen:
        return ""
    return str(ipaddress.ip_interface(f"{att.ip}/{att.prefixlen}").network)


def _running(state: ClusterState) -> Iterable[tuple[str, ContainerSpec]]:
    """(node, spec) of every container its assigned node reports running."""
    for a in sorted(state.assignments, key=lambda a: a.spec.name):
        status = state.statuses.get(a.spec.name)
        if status is not None and status.node == a.node and status.state == ContainerState.RUNNING:
            yield a.node, a.spec


def plan(state: ClusterState, only: str = "") -> list[netcheck_pb2.NetCheckNetwork]:
    """Every network (or ``only``) with its running members; facts are filled in later."""
    nets: dict[str, netcheck_pb2.NetCheckNetwork] = {}
    for name, doc in state.networks.items():
        nets[name] = netcheck_pb2.NetCheckNetwork(
            name=name, driver=doc.spec.driver, subnet=doc.spec.subnet,
            vni=state.vnis.of(name), options=doc.spec.options,
        )  # fmt: skip
    for node, spec in _running(state):
        for att in spec.networks:
            net = nets.get(att.network)
            if net is None:     # an implicit network: described by its attachments
                net = nets[att.network] = netcheck_pb2.NetCheckNetwork(
                    name=att.network, driver=att.driver, subnet=_subnet(att), vni=att.vni,
                    options=att.options, internal=att.internal,
                )  # fmt: skip
            elif att.internal:
                net.internal = True
            record = state.nodes.get(node)
            net.members.append(netcheck_pb2.NetCheckMember(
                container=spec.name, node=node, ip=att.ip, mac=att.mac,
                host_ip=record.address if record else "",
                ports=[netcheck_pb2.NetCheckPort(container_port=p.container_port,
                                                 host_port=p.host_port, protocol=p.protocol)
                       for p in spec.ports],
            ))  # fmt: skip
    if only:
        if only not in nets:
            raise NotFoundError(f'network "{only}" not found (no Network of that name and '
                                "no container attached to it)")
        return [nets[only]]
    return [nets[name] for name in sorted(nets)]


async def _ask(state: ClusterState, net: netcheck_pb2.NetCheckNetwork,
               node: str, dialer: AgentDialer) -> netcheck_pb2.NodeFacts:
    record = state.nodes.get(node)
    if record is None:
        return netcheck_pb2.NodeFacts(node=node, error=f"node {node} is not Ready")
    req = netcheck_pb2.NetDiagRequest(
        network=net.name, driver=net.driver, vni=net.vni, subnet=net.subnet,
        names=sorted({m.container for m in net.members}),
        local=sorted(m.container for m in net.members if m.node == node),
    )  # fmt: skip
    try:
        async with dialer.channel(record) as channel:
            facts = await agent_stub(channel).NetDiag(req, timeout=NETDIAG_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        return netcheck_pb2.NodeFacts(
            node=node, error=f"the agent of node {node} at {record.agent_addr} gave no "
                             f"facts: {exc.details() or exc.code().name}")
    return netcheck_pb2.NodeFacts(node=node, facts=facts)


async def netcheck(state: ClusterState, only: str = "",
                   dialer: AgentDialer = PLAINTEXT) -> netcheck_pb2.NetCheckResponse:
    nets = plan(state, only)
    asks = [(net, node) for net in nets for node in sorted({m.node for m in net.members})]
    limit = asyncio.Semaphore(PARALLEL)

    async def ask(net: netcheck_pb2.NetCheckNetwork, node: str) -> netcheck_pb2.NodeFacts:
        async with limit:
            return await _ask(state, net, node, dialer)

    answers = await asyncio.gather(*(ask(net, node) for net, node in asks))
    by_net: dict[str, list[netcheck_pb2.NodeFacts]] = defaultdict(list)
    for (net, _), facts in zip(asks, answers, strict=True):
        by_net[net.name].append(facts)
    for net in nets:
        net.nodes.extend(by_net[net.name])
    return netcheck_pb2.NetCheckResponse(networks=nets)
