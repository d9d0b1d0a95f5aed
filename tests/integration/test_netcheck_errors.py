"""netcheck when agents are gone: a real controller on a real etcd, clusterctl as a
subprocess, two running containers on nodes whose agents refuse connections. The check
still ends with a matrix naming each unreachable agent, and exits 9."""

from __future__ import annotations

import json

from berth import keyspace
from berth.etcd import Etcd3Client
from berth.lifecycle import ContainerState
from berth.records import ContainerSpec, ContainerStatus, NetworkAttachment, NodeRecord
from tests.integration.conftest import free_port
from tests.integration.test_errors import Controller, clusterctl, controller  # noqa: F401


async def _two_containers_on_dead_agents(etcd: Etcd3Client) -> dict[str, str]:
    agents = {}
    for n in (1, 2):
        node, name, ip = f"host{n}", f"web-{n}", f"10.42.0.{n + 1}"
        agents[node] = f"127.0.0.1:{free_port()}"     # nothing listens: refused
        await etcd.put(keyspace.node(node), NodeRecord(
            name=node, address=f"192.0.2.{n}", agent_addr=agents[node]).dumps())
        att = NetworkAttachment(network="appnet", driver="overlay", ip=ip, prefixlen=24,
                                mac=f"02:42:0a:2a:00:0{n + 1}", vni=4096)
        await etcd.put(keyspace.assign(node, name), ContainerSpec(
            name=name, service="web", node=node, image="busybox:latest",
            networks=(att,)).dumps())
        await etcd.put(keyspace.status(node, name), ContainerStatus(
            name=name, node=node, state=ContainerState.RUNNING).dumps())
    return agents


async def test_unreachable_agents_are_named_and_exit_9(
    controller: Controller,  # noqa: F811
) -> None:
    agents = await _two_containers_on_dead_agents(controller.etcd)
    result = await clusterctl(controller.address, "netcheck", "-o", "plain")
    assert result.code == 9, result
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].split()[:3] == ["web-1@host1", "-", "ERROR"]
    assert any(line.strip().startswith("could not probe from web-1: cannot reach the agent of "
                                       f"node host1 at {agents['host1']}")
               for line in lines), result.stdout

    result = await clusterctl(controller.address, "netcheck", "appnet", "-o", "json")
    assert result.code == 9, result
    (net,) = json.loads(result.stdout)["networks"]
    assert set(net["nodes"]) == {"host1", "host2"}
    assert net["nodes"]["host2"]["links"] == []
    assert net["nodes"]["host2"]["error"].startswith(
        f"the agent of node host2 at {agents['host2']} gave no facts: ")
    assert {c["status"] for c in net["cells"]} == {"error"}
