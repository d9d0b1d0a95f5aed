"""netcheck's verdicts: which probes each pair gets, whether a pair passed, and why not.

Pure functions over clusterctl.netmodel values and clusterctl.netprobe results, called by
clusterctl.netcheck and unit-tested with tables of fact combinations. ``judge`` decides a
cell (one ordered pair) from its probes; ``diagnose`` explains a failing cell from the
facts the agents reported, naming the node and the peer at fault ("h1 has no FDB entry for
10.42.0.3 (web-2 on h2, ...)"). A failed probe with no fact to explain it keeps the
probe's own reason ("ping: timeout").

Facts were read before the probes ran. An agent's resync only ever repairs, so a fault
seen in a probe was present in the facts too; a fault repaired between the two shows as a
passing probe, never as a wrong diagnosis.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from clusterctl.netmodel import Facts, Member, Network, PairRule, Want
from clusterctl.netprobe import Probe, Target


class Status(enum.StrEnum):
    OK = "ok"            # every probe gave what the driver promises
    FAIL = "fail"        # a pair that should connect does not, or one that should not does
    SKIP = "skip"        # nothing is expected of this pair: not probed
    ERROR = "error"      # the probes could not run from the source


@dataclass(frozen=True)
class Cell:
    src: Member
    dst: Member
    status: Status
    rule: PairRule
    probes: tuple[Probe, ...] = ()
    diagnosis: tuple[str, ...] = ()


def target(net: Network, src: Member, dst: Member) -> Target | None:
    """What ``src`` probes of ``dst``, or None when the pair is not probed."""
    rule = net.expectation.rule(src, dst)
    if rule.dns is Want.SKIP and rule.traffic is Want.SKIP:
        return None
    traffic = rule.traffic is not Want.SKIP
    return Target(dst.container, dst.ip, dns=rule.dns is not Want.SKIP, icmp=traffic,
                  tcp_ports=dst.tcp_ports if traffic else ())


def _mine(dst: Member, probes: Sequence[Probe]) -> tuple[Probe, ...]:
    ports = {f"{dst.ip}:{p}" for p in dst.tcp_ports}
    return tuple(p for p in probes if (p.kind == "dns" and p.target == dst.container)
                 or (p.kind in ("ping", "route") and p.target == dst.ip)
                 or (p.kind == "tcp" and p.target in ports))


def _resolved(dst: Member, probe: Probe | None) -> bool:
    return probe is not None and probe.ok and dst.ip in probe.answers


def judge(net: Network, src: Member, dst: Member, probes: Sequence[Probe] | None,
          error: str = "") -> Cell:
    """The cell for ``src`` -> ``dst`` given every probe ``src`` ran (None: none ran)."""
    rule = net.expectation.rule(src, dst)
    if target(net, src, dst) is None:
        return Cell(src, dst, Status.SKIP, rule)
    if probes is None:
        return Cell(src, dst, Status.ERROR, rule,
                    diagnosis=(f"could not probe from {src.container}: {error}",))
    mine = _mine(dst, probes)
    dns = next((p for p in mine if p.kind == "dns"), None)
    ping = next((p for p in mine if p.kind == "ping"), None)
    tcp = [p for p in mine if p.kind == "tcp"]
    bad = False
    if rule.dns is Want.YES:
        bad |= not _resolved(dst, dns)
    elif rule.dns is Want.NO:
        bad |= _resolved(dst, dns)
    if rule.traffic is Want.YES:
        bad |= ping is None or not ping.ok or len(tcp) < len(dst.tcp_ports) \
            or not all(p.ok for p in tcp)
    elif rule.traffic is Want.NO:
        bad |= (ping is not None and ping.ok) or any(p.ok for p in tcp)
    if not bad:
        return Cell(src, dst, Status.OK, rule, mine)
    return Cell(src, dst, Status.FAIL, rule, mine, diagnose(net, src, dst, rule, mine))


def diagnose(net: Network, src: Member, dst: Member, rule: PairRule,
             probes: Sequence[Probe]) -> tuple[str, ...]:
    """Why the pair failed, most specific first; never empty."""
    found: list[str] = []
    dns = next((p for p in probes if p.kind == "dns"), None)
    if rule.dns is Want.YES and not _resolved(dst, dns):
        found += _dns_failure(net, src, dst, dns)
    elif rule.dns is Want.NO and _resolved(dst, dns):
        found.append(f"DNS: {dst.container} on {dst.node} resolves from {src.container} on "
                     f"{src.node}, but {net.name} is node-local")
    traffic = [p for p in probes if p.kind in ("ping", "tcp")]
    if rule.traffic is Want.YES:
        want = 1 + len(dst.tcp_ports)
        failed = [p for p in traffic if not p.ok]
        if failed or len(traffic) < want:
            found += _traffic_failure(net, src, dst, probes, failed)
    elif rule.traffic is Want.NO:
        for p in traffic:
            if p.ok:
                what = "ICMP" if p.kind == "ping" else f"TCP {p.target}"
                found.append(f"{src.container} reaches {dst.container} ({what}) although "
                             f"{net.name} should keep them apart ({net.expectation.why})")
    return tuple(dict.fromkeys(found)) or ("failed, and no fact explains it",)


def _dns_failure(net: Network, src: Member, dst: Member, probe: Probe | None) -> list[str]:
    if probe is None:
        return [f"DNS: no result for {dst.container} (the probe did not finish)"]
    if probe.ok:
        return [f"DNS: {dst.container} resolves to {', '.join(probe.answers)}, "
                f"not {dst.ip}"]
    found = [f"DNS: {probe.detail}"]
    facts = net.facts.get(src.node)
    if facts is None or facts.error:
        return found
    local = facts.locals.get(src.container)
    if local is not None and not local.resolver:
        found.append(f"{src.container} has no embedded resolver for {net.name} on {src.node}")
    record = facts.names.get(dst.container)
    if record is None or dst.ip in record.ips:
        return found
    if not record.endpoint:
        found.append(f"{src.node} has no endpoint for {dst.container} on {net.name} "
                     f"(not published by {dst.node})")
    elif record.endpoint_ip != dst.ip:
        found.append(f"{src.node} holds {dst.container} at {record.endpoint_ip}, "
                     f"not {dst.ip}")
    else:
        found.append(f"{src.node} withholds {dst.container}'s name: its neighbour and FDB "
                     "entries are not programmed yet")
    return found


def _traffic_failure(net: Network, src: Member, dst: Member, probes: Sequence[Probe],
                     failed: Sequence[Probe]) -> list[str]:
    found: list[str] = []
    unknown: list[str] = []     # nodes whose facts are missing: said last, never a cause
    route = next((p for p in probes if p.kind == "route"), None)
    if route is not None and not route.ok:
        found.append(f"no route to {dst.ip} in {src.container}")
    nodes = [src.node] if src.node == dst.node else [src.node, dst.node]
    for node in nodes:
        facts = net.facts.get(node)
        if facts is None:
            unknown.append(f"no facts from {node}")
        elif facts.error:
            unknown.append(facts.error)
        else:
            found += _devices(facts)
    for member in (src, dst):
        facts = net.facts.get(member.node)
        if facts is not None and not facts.error:
            found += _local_if(facts, member)
    if src.node != dst.node:
        found += _tunnel(net.facts.get(src.node), dst, "")
        found += _tunnel(net.facts.get(dst.node), src, f": replies from {dst.container} are lost")
    for p in failed:
        if p.kind == "tcp" and p.detail == "refused":
            found.append(f"TCP {p.target}: connection refused (nothing listens there in "
                         f"{dst.container})")
    if not found:
        found += [f"{'ICMP' if p.kind == 'ping' else 'TCP ' + p.target}: {p.detail}"
                  for p in failed] or ["no result (the probe did not finish)"]
    return found + unknown


def _devices(facts: Facts) -> list[str]:
    found: list[str] = []
    bridge = facts.link("bridge")
    for link in facts.links:
        what = f"{link.want_kind} device {link.name}"
        if not link.present:
            found.append(f"{what} missing on {facts.node}")
        elif link.kind != link.want_kind:
            found.append(f"{link.name} on {facts.node} is a {link.kind or 'device'}, "
                         f"not a {link.want_kind} device")
        elif not link.up:
            found.append(f"{what} is down on {facts.node}")
        elif (link is not bridge and bridge is not None and bridge.present
              and link.master != bridge.name):
            found.append(f"{what} is not a port of {bridge.name} on {facts.node}")
    return found


def _local_if(facts: Facts, member: Member) -> list[str]:
    local = facts.locals.get(member.container)
    if local is None:
        return []
    if not local.attached:
        return [f"{facts.node}'s agent holds no attachment of {member.container}"]
    if not local.host_ifname:
        return []
    name = f"{member.container}'s host interface {local.host_ifname}"
    if not local.present:
        return [f"{name} is missing on {facts.node}"]
    if not local.up:
        return [f"{name} is down on {facts.node}"]
    bridge = facts.link("bridge")
    if bridge is not None and bridge.present and local.master != bridge.name:
        return [f"{name} is not on {bridge.name} on {facts.node}"]
    return []


def _tunnel(facts: Facts | None, peer: Member, why: str) -> list[str]:
    """The VXLAN entries ``facts``' node needs to send to ``peer`` on another node."""
    if facts is None or facts.error:
        return []
    vxlan = facts.link("vxlan")
    if vxlan is None or not vxlan.present:
        return []
    node, found = facts.node, []
    who = f"{peer.ip} ({peer.container} on {peer.node}, MAC {peer.mac})"
    vteps = facts.fdb.get(peer.mac, frozenset())
    if not vteps:
        found.append(f"{node} has no FDB entry for {who}{why}")
    elif peer.host_ip and peer.host_ip not in vteps:
        found.append(f"{node}'s FDB entry for {who} points at {', '.join(sorted(vteps))}, "
                     f"not {peer.host_ip}{why}")
    mac = facts.neigh.get(peer.ip)
    if mac is None:
        found.append(f"{node} has no neighbour entry for {who}{why}")
    elif mac != peer.mac:
        found.append(f"{node}'s neighbour entry for {peer.ip} has MAC {mac}, "
                     f"not {peer.mac}{why}")
    return found
