"""The probes netcheck runs inside a container, and how their output is read.

clusterctl.netcheck execs ``argv(...)`` in each source container (through the controller,
as ``clusterctl exec`` does): one ``sh`` that probes every peer of that source in
parallel with the busybox tools the lab image has, and prints one tab-separated line per
probe. ``parse`` turns that output into ``Probe`` values; nothing here does I/O, so the
reading of every tool's wording is unit-tested.

Probes and their bounds:

* name: ``nslookup NAME 127.0.0.11`` (the embedded resolver), cut at 3 s;
* route: ``ip -o route get IP`` (does the container know a way to the peer);
* ICMP: ``ping -c 2 -i 0.2 -W 2 IP`` (one reply of two is enough);
* TCP: ``nc -w 2 IP PORT`` with stdin closed, cut at 3 s. nc exits 1 with a reason when
  the connect fails; when it connected it either sees the peer close (0) or is still
  connected when ``timeout`` ends it (143; 124 with coreutils): both mean the port accepted.

Peers are probed ``BATCH`` at a time (each one is a few processes for a moment), so a
container under a small pids limit still runs the script; ``exec_timeout`` grows with
the number of batches. Each line is written by one ``echo``, a single write(2) shorter
than PIPE_BUF, so the parallel probes' lines never interleave. Newlines in a tool's
output become ``|``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RESOLVER = "127.0.0.11"
PROBE_SECONDS = 3           # the longest single probe
BATCH = 4                   # peers probed at once: a container's pids limit must hold them
KILLED = (143, 124)         # ended by timeout: busybox (128 + SIGTERM), coreutils

SCRIPT = r"""
resolver=$1; shift
flat() { tr '\n\t' '| '; }
probe_dns() {
  out=$(timeout 3 nslookup "$1" "$resolver" 2>&1); rc=$?
  echo "dns	$1	$rc	$(printf %s "$out" | flat)"
}
probe_route() {
  out=$(ip -o route get "$1" 2>&1); rc=$?
  echo "route	$1	$rc	$(printf %s "$out" | flat)"
}
probe_ping() {
  out=$(ping -c 2 -i 0.2 -W 2 "$1" 2>&1); rc=$?
  echo "ping	$1	$rc	$(printf %s "$out" | flat)"
}
probe_tcp() {
  out=$(timeout 3 nc -w 2 "$1" "$2" </dev/null 2>&1 >/dev/null); rc=$?
  echo "tcp	$1:$2	$rc	$(printf %s "$out" | flat)"
}
n=0
while [ $# -ge 4 ]; do
  name=$1 ip=$2 what=$3 ports=$4; shift 4
  case $what in *d*) probe_dns "$name" & ;; esac
  case $what in *p*) probe_route "$ip" & probe_ping "$ip" & ;; esac
  for port in $(echo "$ports" | tr ',' ' '); do probe_tcp "$ip" "$port" & done
  n=$((n + 1))
  if [ "$n" -ge BATCH ]; then wait; n=0; fi
done
wait
""".replace("BATCH", str(BATCH))


@dataclass(frozen=True)
class Target:
    """One peer to probe from a source: its name, address, and what to try."""

    name: str
    ip: str
    dns: bool = True
    icmp: bool = True
    tcp_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class Probe:
    """One probe's outcome. ``ok`` is what the tool saw (resolved, replied, connected),
    not whether that was wanted; ``answers`` are the addresses a name resolved to."""

    kind: str                    # dns | route | ping | tcp
    target: str                  # name | ip | ip:port
    ok: bool
    detail: str                  # the reason in a few words, or what was found
    answers: tuple[str, ...] = ()


def exec_timeout(targets: Sequence[Target]) -> float:
    """How long the whole script may take: every batch's slowest probe, plus the time a
    loaded node takes to start an exec."""
    batches = -(-len(targets) // BATCH)
    return 30.0 + 2 * PROBE_SECONDS * batches


def argv(targets: Sequence[Target], resolver: str = RESOLVER) -> list[str]:
    """The exec argv that probes ``targets`` (at least one) from inside a container."""
    args = ["sh", "-c", SCRIPT, "netcheck", resolver]
    for t in targets:
        what = ("d" if t.dns else "") + ("p" if t.icmp else "") or "-"
        args += [t.name, t.ip, what, ",".join(str(p) for p in t.tcp_ports)]
    return args


_ADDRESS = re.compile(r"^Address:\s+(\d+\.\d+\.\d+\.\d+)$")
_CANT_FIND = re.compile(r"can't find [^:]*: (\w+)")


def _dns(name: str, rc: int, text: str) -> Probe:
    lines = [line.strip() for line in text.split("|")]
    answers: list[str] = []
    in_answer = False
    for line in lines:
        if line.startswith("Name:"):
            in_answer = True
        found = _ADDRESS.match(line)
        if in_answer and found:
            answers.append(found.group(1))
    if answers:
        return Probe("dns", name, True, ",".join(answers), tuple(answers))
    if rc in KILLED:
        return Probe("dns", name, False, f"no answer within {PROBE_SECONDS} s")
    codes = _CANT_FIND.findall(text)
    if codes:
        return Probe("dns", name, False, codes[0])
    if "timed out" in text or "no servers could be reached" in text:
        return Probe("dns", name, False, f"no answer from the resolver at {RESOLVER}")
    return Probe("dns", name, False, _first(text, rc))


def _reason(text: str) -> str | None:
    lowered = text.lower()
    for needle, reason in (
        ("network is unreachable", "network unreachable"),
        ("no route to host", "no route to host"),
        ("connection refused", "refused"),
        ("timed out", "timeout"),
        ("bad address", "bad address"),
    ):
        if needle in lowered:
            return reason
    return None


def _ping(ip: str, rc: int, text: str) -> Probe:
    if rc == 0:
        return Probe("ping", ip, True, "reply")
    reason = _reason(text)
    if reason is None and "packet loss" in text:
        reason = "timeout"
    return Probe("ping", ip, False, reason or _first(text, rc))


def _tcp(target: str, rc: int, text: str) -> Probe:
    if rc == 0 or rc in KILLED:
        return Probe("tcp", target, True, "connected")
    return Probe("tcp", target, False, _reason(text) or _first(text, rc))


def _route(ip: str, rc: int, text: str) -> Probe:
    if rc == 0:
        return Probe("route", ip, True, " ".join(text.replace("|", " ").split()))
    return Probe("route", ip, False, "no route")


def _first(text: str, rc: int) -> str:
    first = next((p.strip() for p in text.split("|") if p.strip()), "")
    return first[:200] or f"exit status {rc}"


def parse(output: str) -> list[Probe]:
    """Every probe line of the script's output; other lines are ignored."""
    probes: list[Probe] = []
    for line in output.splitlines():
        parts = line.split("\t", 3)
        if len(parts) != 4 or not parts[2].lstrip("-").isdigit():
            continue
        kind, target, rc, text = parts[0], parts[1], int(parts[2]), parts[3]
        if kind == "dns":
            probes.append(_dns(target, rc, text))
        elif kind == "ping":
            probes.append(_ping(target, rc, text))
        elif kind == "tcp":
            probes.append(_tcp(target, rc, text))
        elif kind == "route":
            probes.append(_route(target, rc, text))
    return probes


def missing(targets: Iterable[Target], probes: Sequence[Probe]) -> list[str]:
    """Probes asked for that printed no line (the shell was killed, or a tool is missing)."""
    seen = {(p.kind, p.target) for p in probes}
    want: list[tuple[str, str]] = []
    for t in targets:
        if t.dns:
            want.append(("dns", t.name))
        if t.icmp:
            want += [("route", t.ip), ("ping", t.ip)]
        want += [("tcp", f"{t.ip}:{port}") for port in t.tcp_ports]
    return [f"{kind} {target}" for kind, target in want if (kind, target) not in seen]
