"""netcheck's verdicts and diagnoses over tables of fact combinations (no kernel, no lab).

The base case is a healthy overlay: web-1 on h1 and web-2 on h2, every device up, each
host holding the other's FDB and neighbour entries, each DNS serving both names. Each
case breaks one fact and says what a user must read in the failing cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from clusterctl.netdiagnosis import Status, judge, target
from clusterctl.netmodel import (
    Facts,
    LocalIf,
    Member,
    NameRecord,
    Network,
    Want,
)
from clusterctl.netprobe import Probe

W1 = Member("web-1", "h1", "10.42.0.2", "02:42:0a:2a:00:02", "10.0.0.1")
W2 = Member("web-2", "h2", "10.42.0.3", "02:42:0a:2a:00:03", "10.0.0.2", tcp_ports=(80,))
W3 = Member("web-3", "h1", "10.42.0.4", "02:42:0a:2a:00:04", "10.0.0.1")


def healthy(node: str, host_ip: str, local: Member, peer: Member) -> Facts:
    from clusterctl.netmodel import Link

    return Facts(
        node=node, host_ip=host_ip,
        links=(Link("bo-256", "bridge", True, "bridge", True),
               Link("vx-256", "vxlan", True, "vxlan", True, "bo-256")),
        fdb={peer.mac: frozenset({peer.host_ip})},
        neigh={peer.ip: peer.mac},
        names={m.container: NameRecord(m.container, (m.ip,), True, m.ip) for m in (W1, W2)},
        locals={local.container: LocalIf(local.container, True, f"veth-{local.container}",
                                         True, True, "bo-256", True)},
    )  # fmt: skip


def network(driver: str = "overlay", name: str = "appnet", options: dict[str, str] | None = None,
            members: tuple[Member, ...] = (W1, W2), **facts: Facts) -> Network:
    base = {"h1": healthy("h1", "10.0.0.1", W1, W2), "h2": healthy("h2", "10.0.0.2", W2, W1)}
    base.update(facts)
    return Network(name, driver, "10.42.0.0/24", options or {}, members, base)


def ok_probes(dst: Member) -> list[Probe]:
    found = [Probe("dns", dst.container, True, dst.ip, (dst.ip,)),
             Probe("route", dst.ip, True, f"{dst.ip} dev eth0"),
             Probe("ping", dst.ip, True, "reply")]
    return found + [Probe("tcp", f"{dst.ip}:{p}", True, "connected") for p in dst.tcp_ports]


def with_probe(dst: Member, kind: str, probe: Probe) -> list[Probe]:
    return [probe if p.kind == kind else p for p in ok_probes(dst)]


PING_TIMEOUT = Probe("ping", W2.ip, False, "timeout")


def facts(node: str, **changes: object) -> Facts:
    base = network().facts[node]
    return replace(base, **changes)  # type: ignore[arg-type]


def link_change(node: str, name: str, **changes: object) -> Facts:
    base = network().facts[node]
    links = tuple(replace(lk, **changes) if lk.name == name else lk  # type: ignore[arg-type]
                  for lk in base.links)
    return replace(base, links=links)


Case = tuple[Callable[[], Network], Member, Member, list[Probe], str]

CASES: dict[str, Case] = {
    "h1-lacks-fdb-for-peer": (
        lambda: network(h1=facts("h1", fdb={})), W1, W2, with_probe(W2, "ping", PING_TIMEOUT),
        "h1 has no FDB entry for 10.42.0.3 (web-2 on h2, MAC 02:42:0a:2a:00:03)"),
    "reply-path-names-the-host-that-lacks-it": (
        lambda: network(h1=facts("h1", fdb={})), W2, W1,
        with_probe(W1, "ping", Probe("ping", W1.ip, False, "timeout")),
        "h1 has no FDB entry for 10.42.0.3 (web-2 on h2, MAC 02:42:0a:2a:00:03): "
        "replies from web-1 are lost"),
    "fdb-points-at-wrong-vtep": (
        lambda: network(h1=facts("h1", fdb={W2.mac: frozenset({"10.0.0.9"})})), W1, W2,
        with_probe(W2, "ping", PING_TIMEOUT),
        "h1's FDB entry for 10.42.0.3 (web-2 on h2, MAC 02:42:0a:2a:00:03) points at "
        "10.0.0.9, not 10.0.0.2"),
    "neighbour-missing": (
        lambda: network(h1=facts("h1", neigh={})), W1, W2, with_probe(W2, "ping", PING_TIMEOUT),
        "h1 has no neighbour entry for 10.42.0.3 (web-2 on h2, MAC 02:42:0a:2a:00:03)"),
    "neighbour-wrong-mac": (
        lambda: network(h1=facts("h1", neigh={W2.ip: "02:42:0a:2a:00:99"})), W1, W2,
        with_probe(W2, "ping", PING_TIMEOUT),
        "h1's neighbour entry for 10.42.0.3 has MAC 02:42:0a:2a:00:99, not 02:42:0a:2a:00:03"),
    "vxlan-missing": (
        lambda: network(h1=link_change("h1", "vx-256", present=False, kind="", up=False)),
        W1, W2, with_probe(W2, "ping", PING_TIMEOUT), "vxlan device vx-256 missing on h1"),
    "vxlan-down-on-peer": (
        lambda: network(h2=link_change("h2", "vx-256", up=False)), W1, W2,
        with_probe(W2, "ping", PING_TIMEOUT), "vxlan device vx-256 is down on h2"),
    "vxlan-off-the-bridge": (
        lambda: network(h1=link_change("h1", "vx-256", master="")), W1, W2,
        with_probe(W2, "ping", PING_TIMEOUT), "vxlan device vx-256 is not a port of bo-256 on h1"),
    "wrong-kind": (
        lambda: network(h1=link_change("h1", "vx-256", kind="dummy")), W1, W2,
        with_probe(W2, "ping", PING_TIMEOUT), "vx-256 on h1 is a dummy, not a vxlan device"),
    "veth-off-the-bridge": (
        lambda: network(h1=facts("h1", locals={"web-1": LocalIf(
            "web-1", True, "veth-web-1", True, True, "", True)})),
        W1, W2, with_probe(W2, "ping", PING_TIMEOUT),
        "web-1's host interface veth-web-1 is not on bo-256 on h1"),
    "veth-missing": (
        lambda: network(h2=facts("h2", locals={"web-2": LocalIf(
            "web-2", True, "veth-web-2", False)})),
        W1, W2, with_probe(W2, "ping", PING_TIMEOUT),
        "web-2's host interface veth-web-2 is missing on h2"),
    "peer-agent-gave-no-facts": (
        lambda: network(h2=Facts("h2", error="the agent of node h2 at 10.0.0.2:7000 gave no "
                                              "facts: unavailable")),
        W1, W2, with_probe(W2, "ping", PING_TIMEOUT),
        "the agent of node h2 at 10.0.0.2:7000 gave no facts: unavailable"),
    "no-route": (
        lambda: network(), W1, W2,
        [Probe("dns", "web-2", True, W2.ip, (W2.ip,)), Probe("route", W2.ip, False, "no route"),
         Probe("ping", W2.ip, False, "network unreachable"),
         Probe("tcp", f"{W2.ip}:80", False, "network unreachable")],
        "no route to 10.42.0.3 in web-1"),
    "nothing-explains-a-timeout": (
        lambda: network(), W1, W2, with_probe(W2, "ping", PING_TIMEOUT), "ICMP: timeout"),
    "tcp-refused": (
        lambda: network(), W1, W2,
        with_probe(W2, "tcp", Probe("tcp", f"{W2.ip}:80", False, "refused")),
        "TCP 10.42.0.3:80: connection refused (nothing listens there in web-2)"),
    "dns-nxdomain-no-endpoint": (
        lambda: network(h1=facts("h1", names={"web-2": NameRecord("web-2", ())})), W1, W2,
        with_probe(W2, "dns", Probe("dns", "web-2", False, "NXDOMAIN")),
        "h1 has no endpoint for web-2 on appnet (not published by h2)"),
    "dns-nxdomain-says-so": (
        lambda: network(h1=facts("h1", names={"web-2": NameRecord("web-2", ())})), W1, W2,
        with_probe(W2, "dns", Probe("dns", "web-2", False, "NXDOMAIN")), "DNS: NXDOMAIN"),
    "dns-withheld-until-programmed": (
        lambda: network(h1=facts("h1", names={"web-2": NameRecord("web-2", (), True, W2.ip)})),
        W1, W2, with_probe(W2, "dns", Probe("dns", "web-2", False, "SERVFAIL")),
        "h1 withholds web-2's name: its neighbour and FDB entries are not programmed yet"),
    "dns-stale-endpoint": (
        lambda: network(h1=facts("h1", names={"web-2": NameRecord("web-2", (), True,
                                                                 "10.42.0.9")})),
        W1, W2, with_probe(W2, "dns", Probe("dns", "web-2", False, "NXDOMAIN")),
        "h1 holds web-2 at 10.42.0.9, not 10.42.0.3"),
    "dns-wrong-answer": (
        lambda: network(), W1, W2,
        with_probe(W2, "dns", Probe("dns", "web-2", True, "10.42.0.9", ("10.42.0.9",))),
        "DNS: web-2 resolves to 10.42.0.9, not 10.42.0.3"),
    "dns-no-resolver": (
        lambda: network(h1=facts("h1", locals={"web-1": LocalIf(
            "web-1", True, "veth-web-1", True, True, "bo-256", False)})),
        W1, W2, with_probe(W2, "dns", Probe("dns", "web-2", False, "no answer within 3 s")),
        "web-1 has no embedded resolver for appnet on h1"),
    "probe-line-lost": (
        lambda: network(), W1, W2, [p for p in ok_probes(W2) if p.kind != "ping"],
        "no result (the probe did not finish)"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_failing_cell_is_explained(case: Case) -> None:
    make, src, dst, probes, want = case
    cell = judge(make(), src, dst, probes)
    assert cell.status is Status.FAIL
    assert want in cell.diagnosis, cell.diagnosis


def test_healthy_pair_passes_with_no_diagnosis() -> None:
    cell = judge(network(), W1, W2, ok_probes(W2))
    assert (cell.status, cell.diagnosis) == (Status.OK, ())
    assert [p.kind for p in cell.probes] == ["dns", "route", "ping", "tcp"]


def test_only_the_destinations_own_probes_count() -> None:
    # web-1 probed web-2 and web-3 in one exec; web-3's failure is not web-2's.
    probes = [*ok_probes(W2), Probe("ping", W3.ip, False, "timeout")]
    assert judge(network(members=(W1, W2, W3)), W1, W2, probes).status is Status.OK


def test_missing_fdb_on_one_host_fails_both_directions_and_nothing_else() -> None:
    net = network(h1=facts("h1", fdb={}))
    forward = judge(net, W1, W2, with_probe(W2, "ping", PING_TIMEOUT))
    back = judge(net, W2, W1, with_probe(W1, "ping", Probe("ping", W1.ip, False, "timeout")))
    for cell in (forward, back):
        assert any(d.startswith("h1 has no FDB entry for 10.42.0.3 (web-2 on h2")
                   for d in cell.diagnosis), cell.diagnosis
        assert not any("h2" in d.split()[0] for d in cell.diagnosis), cell.diagnosis


def test_exec_failure_is_an_error_cell() -> None:
    cell = judge(network(), W1, W2, None, "container web-1 not found")
    assert cell.status is Status.ERROR
    assert cell.diagnosis == ("could not probe from web-1: container web-1 not found",)


# -- expectations per driver ---------------------------------------------------------

B1 = Member("app-1", "h1", "172.20.0.2", "02:42:ac:14:00:02", "10.0.0.1")
B2 = Member("app-2", "h1", "172.20.0.3", "02:42:ac:14:00:03", "10.0.0.1")
B3 = Member("app-3", "h2", "172.20.0.2", "02:42:ac:14:00:02", "10.0.0.2")


def bridge(name: str = "appbr", options: dict[str, str] | None = None) -> Network:
    return Network(name, "bridge", "172.20.0.0/24", options or {}, (B1, B2, B3), {})


def test_bridge_same_node_pair_must_connect() -> None:
    assert target(bridge(), B1, B2) is not None
    assert judge(bridge(), B1, B2, ok_probes(B2)).status is Status.OK
    failed = judge(bridge(), B1, B2, with_probe(B2, "ping", Probe("ping", B2.ip, False, "x")))
    assert failed.status is Status.FAIL


def test_bridge_name_of_other_node_must_not_resolve() -> None:
    t = target(bridge(), B1, B3)
    assert t is not None and t.dns and not t.icmp and not t.tcp_ports
    nx = [Probe("dns", "app-3", False, "NXDOMAIN")]
    assert judge(bridge(), B1, B3, nx).status is Status.OK
    leak = judge(bridge(), B1, B3, [Probe("dns", "app-3", True, B3.ip, (B3.ip,))])
    assert leak.status is Status.FAIL
    assert "DNS: app-3 on h2 resolves from app-1 on h1, but appbr is node-local" in \
        leak.diagnosis


def test_icc_off_blocks_same_node_traffic() -> None:
    net = bridge(options={"icc": "false"})
    blocked = [Probe("dns", "app-2", True, B2.ip, (B2.ip,)),
               Probe("ping", B2.ip, False, "timeout")]
    assert judge(net, B1, B2, blocked).status is Status.OK
    leak = judge(net, B1, B2, ok_probes(B2))
    assert leak.status is Status.FAIL
    assert any("reaches app-2 (ICMP) although appbr should keep them apart" in d
               for d in leak.diagnosis)


def test_default_bridge_has_no_dns_and_is_node_local() -> None:
    net = bridge(name="bridge")
    same = target(net, B1, B2)
    assert same is not None and not same.dns and same.icmp
    assert target(net, B1, B3) is None
    assert judge(net, B1, B3, []).status is Status.SKIP


def test_gateway_bridge_and_unknown_drivers_are_not_probed() -> None:
    for net in (bridge(name="berth-gwbridge"), replace(bridge(), driver="ipvlan")):
        assert target(net, B1, B2) is None and target(net, B1, B3) is None


def test_overlay_expects_every_pair() -> None:
    rule = network().expectation
    assert rule.same_node.dns is rule.cross_node.traffic is Want.YES
