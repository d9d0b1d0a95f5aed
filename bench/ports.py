"""TCP throughput through a published port (DNAT) against the container's own IP.

The bench builds its own namespaces (prefix ``bp-<hex>``): a node ``h`` with ``eth0`` to a
second machine ``o`` on the same LAN, and one container wired by the real bridge driver
(BridgeHost + BridgeDriver, as the agent runs them), publishing ``8201 -> 5201/tcp``. In the
same run, alternating so that machine load hits both sides alike, iperf3 (Debian's)
measures from the node:

* ``container IP``: the node to ``<container ip>:5201``, routed into the bridge;
* ``published``: the node to ``<node ip>:8201``, DNATed to the same socket. After the
  DNAT the packets take exactly the ``container IP`` path, so the ratio is DNAT's cost
  (conntrack NAT lookup and rewrite per packet). Goal: >= 0.95x.

For context it also measures ``o`` to ``<node ip>:8201``: the published port from another
machine, forwarded by the node. Berth drops traffic from other machines to a container's
own IP (only published ports are open, as with Docker), so that leg has no unpublished
twin. Everything is removed afterwards, also on errors and Ctrl-C.

    .venv/bin/python bench/ports.py [--runs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from common import iperf3, run, run_main, sigint_ignored

from netplugins.bridge.driver import BridgeDriver
from netplugins.bridge.host import BridgeHost
from netplugins.contract import (
    Attachment,
    ContainerId,
    HostContext,
    NetConf,
    PortMap,
    mac_from_ip,
)
from netplugins.netlink import discover_underlay

GOAL = 0.95
SERVER_PORT = 5201
HOST_PORT = 8201
NET = NetConf(name="benchnet", driver="bridge", subnet="10.77.0.0/24", gateway="10.77.0.1")
CONTAINER_IP = "10.77.0.2"


@dataclass(frozen=True)
class Topology:
    prefix: str
    lan: str           # e.g. 10.251.40

    def path(self, role: str) -> str:
        return f"/run/netns/{self.prefix}-{role}"

    @property
    def node_ip(self) -> str:
        return f"{self.lan}.1"

    @property
    def other_ip(self) -> str:
        return f"{self.lan}.2"


@dataclass(frozen=True)
class Leg:
    label: str
    client_ns: str
    target_ip: str
    target_port: int


def ip(*args: str) -> None:
    run(["ip", *args])


@contextmanager
def topology() -> Iterator[Topology]:
    topo = Topology(f"bp-{secrets.token_hex(3)}", f"10.251.{secrets.randbelow(200) + 20}")
    made: list[str] = []
    try:
        for role in ("h", "o", "c"):
            ip("netns", "add", f"{topo.prefix}-{role}")
            made.append(f"{topo.prefix}-{role}")
        h, o = f"{topo.prefix}-h", f"{topo.prefix}-o"
        ip("-n", h, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", o)
        for ns, addr in ((h, topo.node_ip), (o, topo.other_ip)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield topo
    finally:
        with sigint_ignored():
            for name in reversed(made):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def attachment(topo: Topology) -> Attachment:
    return Attachment(ContainerId("bench-1"), "bench-1", topo.path("c"), CONTAINER_IP, 24,
                      mac_from_ip(CONTAINER_IP), default_route=True,
                      ports=(PortMap(HOST_PORT, SERVER_PORT),))


async def context(topo: Topology) -> HostContext:
    return HostContext(await discover_underlay(topo.node_ip, netns=topo.path("h")),
                       host_netns=topo.path("h"))


async def wire(topo: Topology) -> None:
    ctx = await context(topo)
    await BridgeHost(NET, ctx).ensure()
    await BridgeDriver(ctx).add(attachment(topo), NET)


async def unwire(topo: Topology) -> None:
    """DEL and teardown from names alone, as a restarted agent would; idempotent."""
    ctx = await context(topo)
    await BridgeDriver(ctx).delete(attachment(topo), NET, None)
    await BridgeHost(NET, ctx).teardown()


def iperf_once(leg: Leg, server_ns: str, seconds: int) -> float:
    return iperf3(leg.label, server_ns, SERVER_PORT, leg.client_ns, leg.target_ip, seconds,
                  target_port=leg.target_port).bits_per_second


def measure(legs: list[Leg], server_ns: str, runs: int, seconds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {leg.label: [] for leg in legs}
    for i in range(runs):
        order = legs if i % 2 == 0 else list(reversed(legs))
        for leg in order:
            bps = iperf_once(leg, server_ns, seconds)
            results[leg.label].append(bps)
            print(f"  run {i + 1}/{runs} {leg.label:>30}: {bps / 1e9:6.2f} Gbit/s", flush=True)
    return results


def report(results: dict[str, list[float]], runs: int) -> None:
    """Medians per leg, and the median of per-run ratios: the two legs of one run ran back
    to back, so on a shared machine they met the same load."""
    direct_label, published_label = "container IP (from node)", "published port (from node)"
    med = {label: statistics.median(v) for label, v in results.items()}
    direct = med[direct_label]
    ratio = statistics.median(p / d for p, d in zip(results[published_label],
                                                     results[direct_label], strict=True))
    print()
    print(f"medians of {runs} runs")
    for label, bps in med.items():
        print(f"  {label:>30}: {bps / 1e9:6.2f} Gbit/s  ({bps / direct:4.2f}x container IP)")
    print(f"published/container IP from the node, median of per-run ratios: {ratio:.2f}x; "
          f"goal >= {GOAL}x: {'met' if ratio >= GOAL else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per leg (default 3)")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 -t (default 5)")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds < 1:
        parser.error("need --runs >= 1 and --seconds >= 1")
    with topology() as topo:
        try:
            asyncio.run(wire(topo))
            legs = [
                Leg("container IP (from node)", topo.path("h"), CONTAINER_IP, SERVER_PORT),
                Leg("published port (from node)", topo.path("h"), topo.node_ip, HOST_PORT),
                Leg("published port (other host)", topo.path("o"), topo.node_ip, HOST_PORT),
            ]
            print(f"namespaces {topo.prefix}-*: container {CONTAINER_IP}, published "
                  f"{topo.node_ip}:{HOST_PORT}; {args.runs} x {args.seconds} s per leg",
                  flush=True)
            results = measure(legs, topo.path("c"), args.runs, args.seconds)
        finally:
            with sigint_ignored():
                asyncio.run(unwire(topo))
    report(results, args.runs)


if __name__ == "__main__":
    run_main(main)
