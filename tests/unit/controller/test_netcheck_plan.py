"""controller.netcheck.plan: which containers netcheck sees on each network."""

from __future__ import annotations

import pytest

from berth.errors import NotFoundError
from berth.lifecycle import ContainerState
from berth.manifest import NetworkDocument, load_manifest
from berth.records import (
    ContainerSpec,
    ContainerStatus,
    NetworkAttachment,
    NodeRecord,
    PortMapping,
)
from controller.netcheck import plan
from controller.placement import Assignment
from controller.state import ClusterState
from controller.vni import Owned, VniTable


def network(name: str) -> NetworkDocument:
    doc = load_manifest("n.yaml", f"apiVersion: berth/v1\nkind: Network\nmetadata: {{name: "
                                  f"{name}}}\nspec: {{subnet: 10.42.0.0/24}}\n")[0]
    assert isinstance(doc, NetworkDocument)
    return doc


def spec(name: str, node: str, *atts: NetworkAttachment,
         ports: tuple[PortMapping, ...] = ()) -> ContainerSpec:
    return ContainerSpec(name=name, service=name.rsplit("-", 1)[0], node=node,
                         image="busybox", networks=atts, ports=ports)


def att(network: str, ip: str, driver: str = "overlay") -> NetworkAttachment:
    return NetworkAttachment(network=network, driver=driver, ip=ip, prefixlen=24,
                             mac="02:42:00:00:00:01", vni=256 if driver == "overlay" else 0)


def state(*specs: ContainerSpec, states: dict[str, ContainerState] | None = None,
          status_node: dict[str, str] | None = None) -> ClusterState:
    states = states or {}
    status_node = status_node or {}
    return ClusterState(
        revision=3, networks={"appnet": network("appnet"), "empty": network("empty")},
        nodes={n: NodeRecord(name=n, address=f"10.0.0.{n[1]}", agent_addr=f"10.0.0.{n[1]}:1")
               for n in ("h1", "h2")},
        assignments=[Assignment(s.node, s, 1) for s in specs],
        statuses={s.name: ContainerStatus(name=s.name, node=status_node.get(s.name, s.node),
                                          state=states.get(s.name, ContainerState.RUNNING))
                  for s in specs},
        vnis=VniTable(by_network={"appnet": Owned("256", 2)}),
    )  # fmt: skip


def test_running_members_with_their_node_address_and_ports() -> None:
    web1 = spec("web-1", "h1", att("appnet", "10.42.0.2"),
                ports=(PortMapping(container_port=80, host_port=8080),))
    web2 = spec("web-2", "h2", att("appnet", "10.42.0.3"))
    (appnet, empty) = plan(state(web1, web2))
    assert (appnet.name, appnet.driver, appnet.vni, appnet.subnet) == \
        ("appnet", "overlay", 256, "10.42.0.0/24")
    assert [(m.container, m.node, m.ip, m.host_ip) for m in appnet.members] == [
        ("web-1", "h1", "10.42.0.2", "10.0.0.1"), ("web-2", "h2", "10.42.0.3", "10.0.0.2")]
    assert [(p.container_port, p.protocol) for p in appnet.members[0].ports] == [(80, "tcp")]
    assert (empty.name, list(empty.members)) == ("empty", [])


def test_only_containers_their_node_reports_running() -> None:
    specs = [spec(f"web-{i}", "h1", att("appnet", f"10.42.0.{i + 1}")) for i in (1, 2, 3)]
    st = state(*specs, states={"web-2": ContainerState.EXITED},
               status_node={"web-3": "h2"})    # a stale status from the node it left
    (appnet,) = plan(st, "appnet")
    assert [m.container for m in appnet.members] == ["web-1"]


def test_implicit_network_is_described_by_its_attachments() -> None:
    a = spec("box-1", "h1", att("bridge", "172.17.0.2", driver="bridge"))
    (bridge,) = plan(state(a), "bridge")
    assert (bridge.driver, bridge.subnet, bridge.vni) == ("bridge", "172.17.0.0/24", 0)


def test_unknown_network_is_not_found() -> None:
    with pytest.raises(NotFoundError, match='network "nope" not found'):
        plan(state(), "nope")
