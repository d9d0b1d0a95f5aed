"""netcheck's two real halves on real netlink, without a lab: the agent's facts
(agent.netdiag) and the busybox probe script (clusterctl.netprobe).

Topology, in fresh namespaces named bt-nd-<random>-*: a switch netns with a bridge, two
host netns on it (underlay 10.251.<x>.11/.12), one container netns per host, joined by the
overlay driver and programmed by OverlayHost as the agent would. Every namespace is
deleted in ``finally``.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.dns import Records
from agent.endpoints import EndpointTable
from agent.netdiag import diagnose
from agent.netresults import ResultStore
from berth import keyspace
from berth.etcd import KVMeta, PutEvent
from berth.records import Endpoint
from clusterctl.netdiagnosis import Status, judge
from clusterctl.netmodel import Member, network_from_proto
from clusterctl.netprobe import Probe, Target, argv, missing, parse
from netplugins.contract import Attachment, ContainerId, HostContext, NetConf, Peer, mac_from_ip
from netplugins.netlink import discover_underlay
from netplugins.overlay.driver import OverlayDriver
from netplugins.overlay.host import OverlayHost
from protos import netcheck_pb2
from tests import needs

pytestmark = pytest.mark.integration

VNI = 4343
NET = NetConf(name="appnet", driver="overlay", subnet="10.42.0.0/24", gateway="10.42.0.1",
              vni=VNI)
BUSYBOX = "/bin/busybox"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Topo:
    prefix: str
    underlay: str
    ctx: dict[int, HostContext] = field(default_factory=dict)
    atts: dict[int, Attachment] = field(default_factory=dict)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    def host_ip(self, n: int) -> str:
        return f"{self.underlay}.1{n}"

    def member(self, n: int) -> Member:
        a = self.atts[n]
        return Member(a.container_name, f"h{n}", a.ip, a.mac, self.host_ip(n))


@pytest.fixture
def namespaces() -> Iterator[Topo]:
    needs.root()
    topo = Topo(f"bt-nd-{secrets.token_hex(3)}", f"10.251.{secrets.randbelow(200) + 20}")
    made: list[str] = []
    try:
        for role in ("sw", "h1", "h2", "c1", "c2"):
            sh("ip", "netns", "add", topo.ns(role))
            made.append(topo.ns(role))
        sw = topo.ns("sw")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for n in (1, 2):
            host = topo.ns(f"h{n}")
            sh("ip", "-n", sw, "link", "add", f"p{n}", "type", "veth", "peer", "name", "eth0",
               "netns", host)
            sh("ip", "-n", sw, "link", "set", f"p{n}", "master", "br0", "up")
            sh("ip", "-n", host, "addr", "add", f"{topo.host_ip(n)}/24", "dev", "eth0")
            sh("ip", "-n", host, "link", "set", "eth0", "up")
            sh("ip", "-n", f"{topo.prefix}-c{n}", "link", "set", "lo", "up")
        yield topo
    finally:
        for name in reversed(made):
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
async def overlay(namespaces: Topo, tmp_path: Path) -> AsyncIterator[Topo]:
    """Both containers attached and both hosts programmed, as two agents would leave them."""
    topo = namespaces
    hosts = {}
    for n in (1, 2):
        underlay = await discover_underlay(topo.host_ip(n), netns=topo.path(f"h{n}"))
        topo.ctx[n] = HostContext(underlay, host_netns=topo.path(f"h{n}"))
        ip = f"10.42.0.{10 + n}"
        topo.atts[n] = Attachment(
            container_id=ContainerId(f"web-{n}"), container_name=f"web-{n}",
            netns=topo.path(f"c{n}"), ip=ip, prefixlen=24, mac=mac_from_ip(ip),
        )  # fmt: skip
        hosts[n] = OverlayHost(NET, topo.ctx[n])
        await hosts[n].ensure()
        result = await OverlayDriver(topo.ctx[n]).add(topo.atts[n], NET)
        ResultStore(tmp_path / f"h{n}").store(f"web-{n}", "appnet", result, NET,
                                               topo.atts[n])
    peers = frozenset(Peer(a.ip, a.mac, topo.host_ip(n)) for n, a in topo.atts.items())
    for n in (1, 2):
        await hosts[n].sync(peers)
    yield topo
    for n in (1, 2):
        await hosts[n].teardown()


@dataclass
class View:
    """What agent.netdiag reads of the agent, built the way NetworkManager holds it."""

    node: str
    ctx: HostContext
    results: ResultStore
    records: Records = field(default_factory=Records)
    table: EndpointTable = field(default_factory=lambda: EndpointTable(lambda: None))
    resolvers: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def dns(self) -> View:
        return self

    def attached(self) -> dict[str, frozenset[str]]:
        return self.resolvers


def view(topo: Topo, n: int, tmp_path: Path) -> View:
    v = View(f"h{n}", topo.ctx[n], ResultStore(tmp_path / f"h{n}"),
             resolvers={f"web-{n}": frozenset({"appnet"})})
    for m in (1, 2):
        a = topo.atts[m]
        v.records.set_endpoint("appnet", a.container_name, "web", a.ip)  # type: ignore[arg-type]
        ep = Endpoint(network="appnet", container=a.container_name, service="web",
                      node=f"h{m}", ip=a.ip, mac=a.mac, host_ip=topo.host_ip(m))
        key = keyspace.endpoint(f"h{m}", "appnet", a.container_name)
        v.table.apply(PutEvent(key, ep.dumps(), KVMeta(key, m, m, 1, 0)))
        placed = keyspace.assign(f"h{m}", a.container_name)
        v.table.apply(PutEvent(placed, b"{}", KVMeta(placed, m, m, 1, 0)))
    return v


def request(local: str) -> netcheck_pb2.NetDiagRequest:
    return netcheck_pb2.NetDiagRequest(network="appnet", driver="overlay", vni=VNI,
                                       subnet=NET.subnet, names=["web-1", "web-2"],
                                       local=[local])


async def test_facts_show_devices_entries_and_local_interfaces(overlay: Topo,
                                                               tmp_path: Path) -> None:
    topo = overlay
    facts = await diagnose(view(topo, 1, tmp_path), request("web-1"))
    assert (facts.node, facts.host_ip) == ("h1", topo.host_ip(1))
    assert [(lk.name, lk.want_kind, lk.present, lk.kind, lk.up, lk.master)
            for lk in facts.links] == [
        (f"bo-{VNI}", "bridge", True, "bridge", True, ""),
        (f"vx-{VNI}", "vxlan", True, "vxlan", True, f"bo-{VNI}")]
    peer = topo.atts[2]
    assert [(f.mac, f.dst) for f in facts.fdb] == [(peer.mac, topo.host_ip(2))]
    assert [(n.ip, n.mac) for n in facts.neighbours] == [(peer.ip, peer.mac)]
    (local,) = facts.locals
    assert (local.container, local.attached, local.present, local.up, local.master,
            local.resolver) == ("web-1", True, True, True, f"bo-{VNI}", True)
    assert {n.name: list(n.ips) for n in facts.names} == {"web-1": [topo.atts[1].ip],
                                                          "web-2": [peer.ip]}


async def test_deleted_fdb_entry_and_device_show_in_facts_and_diagnosis(
        overlay: Topo, tmp_path: Path) -> None:
    topo = overlay
    peer = topo.atts[2]
    sh("bridge", "-n", topo.ns("h1"), "fdb", "del", peer.mac, "dev", f"vx-{VNI}",
       "dst", topo.host_ip(2))
    facts = {n: await diagnose(view(topo, n, tmp_path), request(f"web-{n}")) for n in (1, 2)}
    assert list(facts[1].fdb) == []
    net = network_from_proto(netcheck_pb2.NetCheckNetwork(
        name="appnet", driver="overlay", subnet=NET.subnet, vni=VNI,
        members=[netcheck_pb2.NetCheckMember(container=f"web-{n}", node=f"h{n}",
                                             ip=topo.atts[n].ip, mac=topo.atts[n].mac,
                                             host_ip=topo.host_ip(n)) for n in (1, 2)],
        nodes=[netcheck_pb2.NodeFacts(node=f"h{n}", facts=facts[n]) for n in (1, 2)]))
    probes = probe_from(topo, 1, [Target("web-2", peer.ip, dns=False)])
    cell = judge(net, topo.member(1), topo.member(2), probes)
    assert cell.status is Status.FAIL
    assert f"h1 has no FDB entry for {peer.ip} (web-2 on h2, MAC {peer.mac})" in cell.diagnosis

    sh("ip", "-n", topo.ns("h1"), "link", "del", f"vx-{VNI}")
    again = await diagnose(view(topo, 1, tmp_path), request("web-1"))
    assert [(lk.name, lk.present) for lk in again.links] == [(f"bo-{VNI}", True),
                                                              (f"vx-{VNI}", False)]


def probe_from(topo: Topo, n: int, targets: list[Target],
               resolver: str = "127.0.0.11") -> list[Probe]:
    done = sh("nsenter", f"--net={topo.path(f'c{n}')}", BUSYBOX, *argv(targets, resolver))
    return parse(done.stdout)


DNS_SERVER = """
import socket
from dnslib import DNSRecord, RR, A, QTYPE, RCODE
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 5353))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(4096)
    q = DNSRecord.parse(data)
    r = q.reply()
    if str(q.q.qname).rstrip(".") == "web-2" and q.q.qtype == QTYPE.A:
        r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("IP"), ttl=2))
    elif str(q.q.qname).rstrip(".") != "web-2":
        r.header.rcode = RCODE.NXDOMAIN
    s.sendto(r.pack(), addr)
"""


def wait_listening(netns: str, port: int) -> None:
    """nc prints no readiness line: poll the netns' listening sockets (bounded)."""
    for _ in range(100):
        out = sh("nsenter", f"--net={netns}", BUSYBOX, "netstat", "-ltn").stdout
        if f":{port} " in out:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} in {netns}")


def test_probe_script_over_a_real_overlay(overlay: Topo) -> None:
    """The script as netcheck runs it: DNS, route, ICMP across VXLAN, TCP open and closed."""
    topo = overlay
    peer = topo.atts[2]
    server = subprocess.Popen(
        ["nsenter", f"--net={topo.path('c1')}", sys.executable, "-c",
         DNS_SERVER.replace("IP", peer.ip)], stdout=subprocess.PIPE, text=True)
    listener = subprocess.Popen(
        ["nsenter", f"--net={topo.path('c2')}", BUSYBOX, "nc", "-l", "-p", "8080"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        wait_listening(topo.path("c2"), 8080)
        probes = {(p.kind, p.target): p for p in probe_from(
            topo, 1, [Target("web-2", peer.ip, tcp_ports=(8080, 8081)),
                      Target("nobody", "10.42.0.99")], resolver="127.0.0.1:5353")}
    finally:
        for proc in (server, listener):
            proc.kill()
            proc.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert probes[("dns", "web-2")].answers == (peer.ip,)
    assert probes[("dns", "nobody")].detail == "NXDOMAIN"
    assert probes[("route", peer.ip)].ok
    assert probes[("ping", peer.ip)].ok
    assert probes[("tcp", f"{peer.ip}:8080")].ok
    assert probes[("tcp", f"{peer.ip}:8081")].detail == "refused"
    assert (probes[("ping", "10.42.0.99")].ok, probes[("ping", "10.42.0.99")].detail) == \
        (False, "timeout")


def test_many_peers_are_probed_in_batches_and_none_is_lost(namespaces: Topo) -> None:
    targets = [Target(f"p{i}", f"127.0.0.{i}", dns=False) for i in range(1, 11)]
    probes = probe_from(namespaces, 1, targets)
    assert missing(targets, probes) == []
    assert all(p.ok for p in probes), [p for p in probes if not p.ok]
