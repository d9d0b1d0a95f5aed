"""Placement with networks (controller.placement): the default network, the gateway bridge
and the default route, host ports, network_mode joiners, and node-local address room."""

from __future__ import annotations

import pytest

from berth.lifecycle import ContainerState
from berth.manifest import NetworkDocument, ServiceDocument, load_manifest
from berth.records import ContainerSpec, ContainerStatus, HostPrefix, NodeRecord, PortMapping
from controller.placement import Assignment, DesiredService, Plan, desired_spec, plan

NETS = """\
apiVersion: berth/v1
kind: Network
metadata: {name: ovl}
spec: {driver: overlay, subnet: 10.42.0.0/24}
---
apiVersion: berth/v1
kind: Network
metadata: {name: secret}
spec: {driver: overlay, subnet: 10.43.0.0/24, internal: true}
---
apiVersion: berth/v1
kind: Network
metadata: {name: br}
spec: {driver: bridge, subnet: 10.50.0.0/29, mtu: 1400, options: {icc: false}}
---
apiVersion: berth/v1
kind: Network
metadata: {name: alan}
spec: {driver: macvlan, subnet: 192.168.5.0/24, options: {parent: eth0}}
"""


def networks() -> dict[str, NetworkDocument]:
    docs = load_manifest("n.yaml", NETS)
    return {d.name: d for d in docs if isinstance(d, NetworkDocument)}


def service(name: str = "web", replicas: int = 1, extra: str = "") -> DesiredService:
    text = (f"apiVersion: berth/v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  replicas: {replicas}\n  image: busybox\n{extra}")
    doc = load_manifest("s.yaml", text)[0]
    assert isinstance(doc, ServiceDocument)
    return DesiredService(doc, 10)


def node(name: str, bip: str = "172.17.0.1/16", *addresses: str) -> NodeRecord:
    return NodeRecord(name=name, address="192.168.5.10", agent_addr="x:1", bip=bip,
                      gwbridge="172.18.0.1/16",
                      addresses=tuple(HostPrefix(cidr=a, device="eth0") for a in addresses))


def nodes(*names: str) -> dict[str, NodeRecord]:
    return {n: node(n) for n in names}


def run(*services: DesiredService, on: dict[str, NodeRecord] | None = None,
        current: tuple[Assignment, ...] = (),
        statuses: dict[str, ContainerStatus] | None = None) -> Plan:
    return plan({s.doc.name: s for s in services}, networks(),
                nodes("h1") if on is None else on, current, statuses=statuses)


def created(result: Plan) -> dict[str, ContainerSpec]:
    return {c.spec.name: c.spec for c in result.creates}


def kept(result: Plan, rev: int = 5) -> tuple[Assignment, ...]:
    return tuple(Assignment(c.spec.node, c.spec, rev) for c in result.creates)


def routes(spec: ContainerSpec) -> list[tuple[str, str, bool]]:
    return [(a.network, a.driver, a.default_route) for a in spec.networks]


@pytest.mark.parametrize(
    ("networks_yaml", "expected"),
    [
        ("", [("bridge", "bridge", True)]),
        ("  networks: [ovl]\n", [("berth-gwbridge", "bridge", True), ("ovl", "overlay", False)]),
        ("  networks: [secret]\n", [("secret", "overlay", False)]),
        ("  networks: [ovl, secret]\n", [("berth-gwbridge", "bridge", True),
                                         ("ovl", "overlay", False),
                                         ("secret", "overlay", False)]),
        ("  networks: [ovl, br]\n", [("br", "bridge", True), ("ovl", "overlay", False)]),
        ("  networks: [alan, br]\n", [("alan", "macvlan", True), ("br", "bridge", False)]),
    ],
    ids=["default-network", "overlay-gets-gateway-bridge", "internal-overlay-no-egress",
         "one-overlay-not-internal", "bridge-carries-route", "first-by-name"],
)
def test_which_networks_and_which_carries_the_default_route(
    networks_yaml: str, expected: list[tuple[str, str, bool]]
) -> None:
    spec = created(run(service(extra=networks_yaml)))["web-1"]
    assert routes(spec) == expected


def test_attachments_carry_the_networks_settings() -> None:
    spec = created(run(service(extra="  networks: [br, secret]\n")))["web-1"]
    br, secret = spec.networks
    assert (br.internal, br.options, br.mtu) == (False, {"icc": "false"}, 1400)
    assert (secret.internal, secret.options, secret.mtu) == (True, {}, 0)
    default = created(run(service()))["web-1"].networks[0]
    assert (default.network, default.options, default.internal) == (
        "bridge", {"icc": "true"}, False)


def test_a_node_without_a_default_network_subnet_gets_no_such_container() -> None:
    old = {"h1": node("h1", bip="")}
    result = run(service(), service("db", extra="  networks: [secret]\n"), on=old)
    assert result.pending == {"web-1": "no Ready node can take it: node h1 reports no subnet "
                                        "for network bridge (its agent predates it)"}
    assert list(created(result)) == ["db-1"]        # needs no implicit network


def test_macvlan_may_share_the_nodes_lan_but_a_bridge_may_not_overlap_the_bip() -> None:
    lan = {"h1": node("h1", "10.50.0.1/24", "192.168.5.10/24")}
    on_lan = run(service(extra="  networks: [alan]\n"), on=lan)
    assert list(created(on_lan)) == ["web-1"]
    on_br = run(service(extra="  networks: [br]\n"), on=lan)
    assert on_br.pending == {"web-1": "no Ready node can take it: network br (10.50.0.0/29) "
                                      "overlaps node h1's default network bridge 10.50.0.0/24"}


def test_a_fixed_host_port_goes_to_another_node_then_waits_naming_the_holder() -> None:
    web = service(replicas=3, extra="  ports: ['8080:80']\n")
    result = run(web, on=nodes("h1", "h2"))
    assert {n: s.node for n, s in created(result).items()} == {"web-1": "h1", "web-2": "h2"}
    assert result.pending == {"web-3": "no Ready node can take it: node h1: host port "
                                       "8080/tcp is published by web-1; node h2: host port "
                                       "8080/tcp is published by web-2"}
    assert created(result)["web-1"].ports == (
        PortMapping(container_port=80, host_port=8080, protocol="tcp", host_ip=""),)


def test_ports_on_other_protocols_or_addresses_do_not_clash() -> None:
    web = service(extra="  ports: ['127.0.0.1:8080:80', '53:53/udp']\n")
    db = service("db", extra="  ports: ['127.0.0.2:8080:80', '53:53/tcp']\n")
    assert {s.node for s in created(run(web, db)).values()} == {"h1"}


def test_random_ports_are_the_lowest_free_and_kept_across_plans() -> None:
    web = service(replicas=2, extra="  ports: ['80', '81']\n  placement: {node: h1}\n")
    db = service("db", extra="  ports: ['32769:9000']\n  placement: {node: h1}\n")
    first = run(web, db)
    ports = {n: [(p.container_port, p.host_port) for p in s.ports]
             for n, s in created(first).items()}
    assert ports == {"db-1": [(9000, 32769)], "web-1": [(80, 32768), (81, 32770)],
                     "web-2": [(80, 32771), (81, 32772)]}
    assert run(web, db, current=kept(first)).empty


def test_a_port_change_that_clashes_is_stuck_not_rolled_out() -> None:
    web = service(extra="  ports: ['8080:80']\n")
    db = service("db", extra="  ports: ['9090:80']\n")
    first = run(web, db)
    clash = service("db", extra="  ports: ['8080:80']\n")
    result = run(web, clash, current=kept(first))
    assert result.empty
    assert result.stuck == {"db-1": "node h1: host port 8080/tcp is published by web-1"}


@pytest.mark.parametrize(
    ("mode", "expected"), [("host", "host"), ("none", "none")], ids=["host", "none"])
def test_host_and_none_join_no_network(mode: str, expected: str) -> None:
    spec = created(run(service(extra=f"  network_mode: {mode}\n")))["web-1"]
    assert (spec.network_mode, spec.networks, spec.ports) == (expected, (), ())


def _status(name: str, node_name: str, state: ContainerState) -> ContainerStatus:
    return ContainerStatus(name=name, node=node_name, state=state)


def test_a_joiner_waits_for_its_target_then_goes_to_its_node() -> None:
    db = service("db", replicas=2)
    side = service("side", replicas=2, extra="  network_mode: service:db\n")
    on = nodes("h1", "h2")
    first = run(db, side, on=on)
    assert {n: s.node for n, s in created(first).items()} == {"db-1": "h1", "db-2": "h2"}
    assert first.pending == {
        "side-1": 'waiting for its network_mode target "db-1" to be placed',
        "side-2": 'waiting for its network_mode target "db-2" to be placed'}
    assert first.awaited == {"db-1", "db-2"}
    running = {"db-2": _status("db-2", "h2", ContainerState.RUNNING),
               "db-1": _status("db-1", "h1", ContainerState.CREATED)}
    second = run(db, side, on=on, current=kept(first), statuses=running)
    assert second.pending == {"side-1": 'waiting for its network_mode target "db-1" to run '
                                        "(it is created)"}
    (joiner,) = second.creates
    assert (joiner.spec.name, joiner.spec.node, joiner.spec.network_mode) == (
        "side-2", "h2", "container:db-2")
    assert joiner.spec.networks == () and joiner.spec.ports == ()


def test_a_joiner_of_a_missing_container_says_so() -> None:
    side = service("side", replicas=3, extra="  network_mode: container:db-3\n")
    result = run(service("db", replicas=2), side)
    assert result.pending["side-1"] == ('its network_mode target "db-3" does not exist (no '
                                        "service has that replica)")


def test_a_joiner_follows_its_target_to_another_node() -> None:
    db = service("db", extra="  placement: {node: h2}\n")
    side = service("side", extra="  network_mode: container:db-1\n")
    target = desired_spec(db.doc, "db-1", "h2", networks())
    joiner = desired_spec(side.doc, "side-1", "h1", networks())
    current = (Assignment("h2", target, 3), Assignment("h1", joiner, 4))
    running = {"db-1": _status("db-1", "h2", ContainerState.RUNNING)}
    result = run(db, side, on=nodes("h1", "h2"), current=current, statuses=running)
    assert [(r.container, r.node) for r in result.removes] == [("side-1", "h1")]
    assert [(c.spec.name, c.spec.node) for c in result.creates] == [("side-1", "h2")]


def test_a_node_local_network_spreads_when_a_nodes_copy_is_full() -> None:
    # 10.50.0.0/29: 8 addresses, minus network, broadcast and gateway: 5 per node.
    web = service(replicas=7, extra="  networks: [br]\n")
    result = run(web, on=nodes("h1", "h2"))
    assert sorted(s.node for s in created(result).values()) == ["h1"] * 4 + ["h2"] * 3
    pinned = service(replicas=6, extra="  networks: [br]\n  placement: {node: h1}\n")
    result = run(pinned, on=nodes("h1", "h2"))
    assert len(result.creates) == 5
    assert result.pending == {"web-6": "network br: no free address left in 10.50.0.0/29 on "
                                       "node h1"}


def test_a_joiner_whose_target_is_gone_is_removed_and_waits() -> None:
    side = service("side", extra="  network_mode: container:db-1\n")
    joiner = desired_spec(side.doc, "side-1", "h1", networks())
    result = run(side, service("db", replicas=0), current=(Assignment("h1", joiner, 4),))
    assert [(r.container, r.node) for r in result.removes] == [("side-1", "h1")]
    assert result.pending == {"side-1": 'its network_mode target "db-1" does not exist (no '
                                        "service has that replica)"}
