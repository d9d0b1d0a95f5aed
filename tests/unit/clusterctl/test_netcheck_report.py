"""netcheck's model (parsing the controller's answer, picking containers) and its output:
the matrix a user reads, plain and JSON."""

from __future__ import annotations

import json

from clusterctl.netcheck import NetReport, Report, _plan
from clusterctl.netdiagnosis import judge
from clusterctl.netmodel import Member, Network, network_from_proto, select
from clusterctl.netprobe import Probe
from clusterctl.netreport import as_json, text
from protos import netcheck_pb2


def proto() -> netcheck_pb2.NetCheckNetwork:
    members = [
        netcheck_pb2.NetCheckMember(container=f"web-{i}", node=f"h{(i + 1) // 2}",
                                    ip=f"10.42.0.{i + 1}", mac=f"02:42:0A:2A:00:0{i + 1}",
                                    host_ip=f"10.0.0.{(i + 1) // 2}")
        for i in (1, 2, 3, 4)
    ]
    members[0].ports.add(container_port=80, host_port=8080, protocol="tcp")
    members[0].ports.add(container_port=53, host_port=5353, protocol="udp")
    facts = netcheck_pb2.NetDiagResponse(node="h1", host_ip="10.0.0.1")
    facts.fdb.add(device="vx-256", mac="02:42:0A:2A:00:04", dst="10.0.0.2")
    facts.links.add(name="vx-256", want_kind="vxlan", present=True, kind="vxlan", up=True)
    return netcheck_pb2.NetCheckNetwork(
        name="appnet", driver="overlay", subnet="10.42.0.0/24", vni=256, members=members,
        nodes=[netcheck_pb2.NodeFacts(node="h1", facts=facts),
               netcheck_pb2.NodeFacts(node="h2", error="node h2 is not Ready")])


def test_from_proto_keeps_tcp_ports_and_lowercases_macs() -> None:
    net = network_from_proto(proto())
    web1 = net.members[0]
    assert (web1.label, web1.tcp_ports, web1.mac) == ("web-1@h1", (80,), "02:42:0a:2a:00:02")
    assert net.facts["h1"].fdb == {"02:42:0a:2a:00:04": frozenset({"10.0.0.2"})}
    assert net.facts["h1"].link("vxlan") is not None
    assert net.facts["h2"].error == "node h2 is not Ready"


def test_one_container_per_node_for_overlay() -> None:
    net = network_from_proto(proto())
    assert [m.container for m in select(net)] == ["web-1", "web-3"]


def test_two_per_node_where_same_node_pairs_matter() -> None:
    net = network_from_proto(proto())
    bridge = Network("appbr", "bridge", net.subnet, {}, net.members, {})
    assert [m.container for m in select(bridge)] == ["web-1", "web-2", "web-3", "web-4"]


def test_one_container_is_nothing_to_check() -> None:
    net = network_from_proto(proto())
    alone = Network("appnet", "overlay", net.subnet, {}, net.members[:1], {})
    chosen, jobs, note = _plan(alone)
    assert (len(chosen), jobs) == (1, {})
    assert note == "fewer than two running containers: nothing to check"


A = Member("web-1", "h1", "10.42.0.2", "02:42:0a:2a:00:02", "10.0.0.1")
B = Member("web-2", "h2", "10.42.0.3", "02:42:0a:2a:00:03", "10.0.0.2")


def report(ping_ok: bool) -> Report:
    net = Network("appnet", "overlay", "10.42.0.0/24", {}, (A, B), {})
    cells = []
    for src, dst in ((A, B), (B, A)):
        probes = [Probe("dns", dst.container, True, dst.ip, (dst.ip,)),
                  Probe("ping", dst.ip, ping_ok or src is B, "reply" if ping_ok else "timeout")]
        cells.append(judge(net, src, dst, probes))
    return Report((NetReport(net, (A, B), tuple(cells)),))


def test_matrix_marks_and_numbers_failing_cells() -> None:
    out = text(report(ping_ok=False), "plain").splitlines()
    assert out[0] == "NETWORK appnet (overlay, 10.42.0.0/24): 2 running containers on 2 nodes"
    assert out[1].split() == ["FROM", "\\", "TO", "web-1@h1", "web-2@h2"]
    assert out[2].split() == ["web-1@h1", "-", "FAIL", "1"]
    assert out[3].split() == ["web-2@h2", "ok", "-"]
    assert out[4] == "  [1] web-1@h1 -> web-2@h2: DNS web-2 ok, ICMP timeout"
    assert out[5].strip() == "ICMP: timeout"
    assert out[-1] == "some pairs do not behave as their network promises"


def test_green_matrix_uses_ticks() -> None:
    out = text(report(ping_ok=True), "table")
    assert "✗" not in out and out.count("✓") == 2
    assert out.splitlines()[-1] == "every pair behaves as its network promises"


def test_json_has_every_cell_with_probes_and_diagnosis() -> None:
    data = json.loads(as_json(report(ping_ok=False)))
    assert data["ok"] is False
    (net,) = data["networks"]
    assert net["expect"]["cross_node"] == {"dns": "yes", "traffic": "yes"}
    cell = net["cells"][0]
    assert (cell["from"], cell["to_node"], cell["status"]) == ("web-1", "h2", "fail")
    assert cell["probes"][1] == {"kind": "ping", "target": "10.42.0.3", "ok": False,
                                 "detail": "timeout", "answers": []}
    assert cell["diagnosis"] == ["ICMP: timeout", "no facts from h1", "no facts from h2"]
    assert net["cells"][1]["status"] == "ok"


def test_json_carries_each_nodes_facts() -> None:
    net = network_from_proto(proto())
    rep = Report((NetReport(net, tuple(select(net)), ()),))
    nodes = json.loads(as_json(rep))["networks"][0]["nodes"]
    assert nodes["h1"]["fdb"] == [{"mac": "02:42:0a:2a:00:04", "dst": "10.0.0.2"}]
    assert nodes["h1"]["links"][0]["name"] == "vx-256"
    assert nodes["h2"]["error"] == "node h2 is not Ready"
