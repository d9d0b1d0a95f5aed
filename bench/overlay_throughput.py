"""Overlay TCP throughput and RTT between containers on two hosts, against the underlay.

One lab, two hosts, an overlay network and an idle container pinned to each host. In
the same run, alternating so that machine load hits both sides alike, it measures
iperf3 (Debian's, entered into the network namespaces with nsenter) and busybox ping
between the two containers' overlay addresses and between the two hosts' underlay
addresses. The client always runs on h1 and the server on h2. Goal: overlay
throughput >= 0.9x underlay.

    .venv/bin/python bench/overlay_throughput.py [--runs 3] [--seconds 5] [--keep-lab]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    BenchError,
    Iperf,
    Lab,
    idle_service_doc,
    iperf3,
    lab_session,
    link_mtu,
    network_doc,
    run,
    run_main,
    wait_running,
)

GOAL = 0.9
PORT = 5201
PINGS = 20
_RTT = re.compile(r"round-trip min/avg/max = [\d.]+/([\d.]+)/[\d.]+ ms")


@dataclass(frozen=True)
class Leg:
    """One side of the comparison: who talks to whom, in which namespaces."""

    label: str
    client_ns: str    # a path nsenter --net accepts
    server_ns: str
    server_ip: str


def iperf_once(leg: Leg, seconds: int) -> Iperf:
    return iperf3(leg.label, leg.server_ns, PORT, leg.client_ns, leg.server_ip, seconds,
                  bind=leg.server_ip)


def rtt_ms(leg: Leg, count: int = PINGS) -> float:
    out = run(["nsenter", f"--net={leg.client_ns}", "/bin/busybox", "ping", "-q",
               "-c", str(count), "-i", "0.2", leg.server_ip], timeout=count + 30)
    match = _RTT.search(out)
    if match is None:
        raise BenchError(f"{leg.label}: no round-trip summary in ping output: {out.strip()!r}")
    return float(match.group(1))


def legs(lab: Lab, tmp: Path) -> tuple[Leg, Leg]:
    """Bring up the two containers; the (underlay, overlay) legs between h1 and h2."""
    lab.apply([network_doc(), idle_service_doc("left", "h1"), idle_service_doc("right", "h2")],
              tmp / "pair.yaml")
    ctrs = wait_running(lab, ["left-1", "right-1"])
    left, right = ctrs["left-1"], ctrs["right-1"]
    if left.node == right.node:
        raise BenchError(f"both containers landed on {left.node}; placement was ignored")
    h1, h2 = lab.host(left.node), lab.host(right.node)
    return (Leg("underlay", h1.netns_path, h2.netns_path, h2.underlay_ip),
            Leg("overlay", left.netns_path, right.netns_path, right.ip))


def measure(under: Leg, over: Leg, runs: int, seconds: int) -> dict[str, list[float]]:
    """Medians need several runs; the order flips every run so neither side always goes first."""
    for leg in (under, over):
        rtt_ms(leg, count=2)  # ARP, FDB and neighbour entries settle before anything counts
    results: dict[str, list[float]] = {f"{k}-{leg.label}": [] for k in ("bps", "rtt")
                                       for leg in (under, over)}
    for i in range(runs):
        order = (over, under) if i % 2 == 0 else (under, over)
        for leg in order:
            r = iperf_once(leg, seconds)
            results[f"bps-{leg.label}"].append(r.bits_per_second)
            print(f"  run {i + 1}/{runs} {leg.label:>8}: {r.bits_per_second / 1e9:6.2f} Gbit/s"
                  f"  ({r.retransmits} retransmits)", flush=True)
        for leg in order:
            rtt = rtt_ms(leg)
            results[f"rtt-{leg.label}"].append(rtt)
            print(f"  run {i + 1}/{runs} {leg.label:>8}: RTT avg {rtt:.3f} ms over {PINGS} pings",
                  flush=True)
    return results


def report(results: dict[str, list[float]], mtus: tuple[int, int], runs: int) -> None:
    bps_u, bps_o = (statistics.median(results[f"bps-{s}"]) for s in ("underlay", "overlay"))
    rtt_u, rtt_o = (statistics.median(results[f"rtt-{s}"]) for s in ("underlay", "overlay"))
    ratio = bps_o / bps_u
    print()
    print(f"medians of {runs} runs     underlay       overlay   overlay/underlay")
    print(f"TCP throughput     {bps_u / 1e9:7.2f} Gbit/s {bps_o / 1e9:7.2f} Gbit/s   {ratio:5.2f}x")
    print(f"RTT (avg)          {rtt_u:7.3f} ms     {rtt_o:7.3f} ms       {rtt_o / rtt_u:5.2f}x")
    print(f"MTU (eth0)         {mtus[0]:7d}        {mtus[1]:7d}")
    print(f"goal >= {GOAL}x throughput: {'met' if ratio >= GOAL else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 -t (default 5)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds < 1:
        parser.error("need --runs >= 1 and --seconds >= 1")
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp, \
            lab_session("bth", 2, args.keep_lab) as lab:
        under, over = legs(lab, Path(tmp))
        mtus = (link_mtu(under.client_ns), link_mtu(over.client_ns))
        print(f"lab {lab.name}: underlay {under.server_ip} (h2), overlay {over.server_ip} "
              f"(right-1 on h2); clients on h1; {args.runs} x {args.seconds} s per side",
              flush=True)
        results = measure(under, over, args.runs, args.seconds)
    report(results, mtus, args.runs)


if __name__ == "__main__":
    run_main(main)
