"""Property: whatever services ask, the scheduler never puts two clashing host ports on one
node, random ports stay in 32768-60999, and a second plan over the first keeps them."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from berth.errors import ManifestError
from berth.manifest import ServiceDocument, load_manifest
from berth.records import NodeRecord, PortMapping
from controller.placement import Assignment, DesiredService, plan

PORT = st.sampled_from(["80", "8080:80", "8081:81/udp", "127.0.0.1:8080:82",
                        "127.0.0.2:8080:83", "127.0.0.1::84", "32768:85", "90/udp"])
SERVICE = st.tuples(st.integers(0, 4), st.lists(PORT, max_size=3, unique=True))


def _clash(a: PortMapping, b: PortMapping) -> bool:
    return (a.host_port == b.host_port and a.protocol == b.protocol
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def _service(index: int, replicas: int, ports: list[str]) -> DesiredService:
    text = (f"apiVersion: berth/v1\nkind: Service\nmetadata: {{name: s{index}}}\nspec:\n"
            f"  replicas: {replicas}\n  image: busybox\n  ports: {ports!r}\n")
    try:
        doc = load_manifest("f.yaml", text)[0]
    except ManifestError:
        assume(False)       # one service publishing a port twice: the model's refusal
        raise
    assert isinstance(doc, ServiceDocument)
    return DesiredService(doc, 1)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(SERVICE, min_size=1, max_size=4), st.integers(1, 3))
def test_no_two_containers_clash_on_a_node(services: list[tuple[int, list[str]]],
                                           node_count: int) -> None:
    desired = {f"s{i}": _service(i, r, p) for i, (r, p) in enumerate(services)}
    nodes = {f"h{i}": NodeRecord(name=f"h{i}", address="192.0.2.1", agent_addr="x:1",
                                 bip="172.17.0.1/16", gwbridge="172.18.0.1/16")
             for i in range(node_count)}
    first = plan(desired, {}, nodes, [])
    by_node: dict[str, list[tuple[str, PortMapping]]] = {}
    for create in first.creates:
        wanted = desired[create.spec.service].doc.spec.published()
        assert len(create.spec.ports) == len(wanted)
        for port in create.spec.ports:
            by_node.setdefault(create.spec.node, []).append((create.spec.name, port))
    for bindings in by_node.values():
        for i, (owner, port) in enumerate(bindings):
            assert all(not _clash(port, other) for o, other in bindings[i + 1:] if o != owner)
    for create in first.creates:
        wanted = desired[create.spec.service].doc.spec.published()
        for want, got in zip(wanted, create.spec.ports, strict=True):
            if want.published is None:
                assert 32768 <= got.host_port <= 60999
    again = plan(desired, {}, nodes, [Assignment(c.spec.node, c.spec, 1) for c in first.creates])
    assert not again.updates and not again.removes
    assert set(again.pending) == set(first.pending)
