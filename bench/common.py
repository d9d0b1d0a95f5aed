"""Lab helpers shared by the cross-host benchmarks (convergence.py, overlay_throughput.py).

Owns bringing a throw-away lab up and always down again, manifests for the overlay
setups, reading containers back, netns paths, process-group cleanup and nearest-rank
percentiles. Everything goes through the ``clusterctl`` next to this interpreter, as a
person would drive berth; convergence.py's sample loop talks gRPC directly, because
the CLI's own start-up (~0.5 s of imports) would swamp what it measures.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CLUSTERCTL = str(Path(sys.executable).parent / "clusterctl")
NETWORK = "appnet"
SUBNET = "10.42.0.0/24"
# Exits on SIGTERM: a bare ``sleep`` as PID 1 ignores it and every delete would wait out
# the agent's 10 s stop grace period, which a benchmark must not spend between samples.
IDLE_COMMAND = ("sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait")


class BenchError(Exception):
    """The lab or berth misbehaved in a way that makes the measurement meaningless."""


@dataclass(frozen=True)
class Host:
    name: str         # node name, "h1"
    netns: str        # "bl-<lab>-h1"
    underlay_ip: str

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


@dataclass(frozen=True)
class Container:
    name: str
    node: str
    state: str
    pid: int
    ip: str           # on NETWORK, "" when not attached (yet)

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"


@dataclass(frozen=True)
class Lab:
    name: str
    controller: str
    hosts: tuple[Host, ...]
    state_dir: Path

    def save_logs(self) -> Path:
        """Copy the daemons' logs out of the lab, which teardown removes, for a post-mortem."""
        dest = Path(tempfile.mkdtemp(prefix=f"berth-bench-{self.name}-logs-"))
        shutil.copytree(self.state_dir / "logs", dest, dirs_exist_ok=True)
        return dest

    def ctl(self, *args: str, timeout: float = 240.0) -> str:
        """Run ``clusterctl --context LAB ARGS`` (mTLS as the lab's admin); its stdout, or
        BenchError with stderr."""
        return run([CLUSTERCTL, "--context", self.name, *args], timeout=timeout)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise BenchError(f"lab {self.name} has no host {name}")

    def apply(self, docs: Sequence[dict[str, Any]], path: Path, wait: bool = True) -> None:
        path.write_text(manifest(docs))
        self.ctl("apply", "-f", str(path), *(["--wait", "--timeout", "120"] if wait else []))

    def containers(self) -> dict[str, Container]:
        rows: list[dict[str, Any]] = json.loads(self.ctl("get", "containers", "-o", "json"))
        return {r["name"]: container_of(r) for r in rows}


def container_of(row: dict[str, Any]) -> Container:
    net = row.get("networks", {}).get(NETWORK, {})
    return Container(name=row["name"], node=row["node"], state=row["state"],
                     pid=int(row.get("pid") or 0), ip=net.get("ip", ""))


def run_main(body: Callable[[], None]) -> None:
    """Run a benchmark's body; one line instead of a traceback for Ctrl-C and BenchError."""
    try:
        body()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def run(argv: Sequence[str], timeout: float = 60.0) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def unique_lab_name(prefix: str) -> str:
    """``prefix`` plus random hex, 8 characters: lab names become interface names."""
    return prefix + secrets.token_hex(4)[: 8 - len(prefix)]


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C must not abort the teardown. Children inherit SIG_IGN across exec."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def lab_session(prefix: str, hosts: int, keep: bool) -> Iterator[Lab]:
    """Bring up a fresh lab and remove it afterwards, also on errors and Ctrl-C."""
    name = unique_lab_name(prefix)
    print(f"bringing up lab {name} with {hosts} hosts ...", flush=True)
    try:
        run([CLUSTERCTL, "lab", "up", "--name", name, "--hosts", str(hosts)], timeout=300)
        (info,) = json.loads(run([CLUSTERCTL, "lab", "status", "--name", name, "-o", "json"]))
        yield Lab(
            name=name,
            controller=info["controller"],
            hosts=tuple(Host(h["name"], h["netns"], h["underlay_ip"]) for h in info["hosts"]),
            state_dir=Path(info["state_dir"]),
        )
    finally:
        if keep:
            print(f"lab {name} kept; remove it with: clusterctl lab down --name {name}")
        else:
            with sigint_ignored():
                print(f"tearing down lab {name} ...", flush=True)
                run([CLUSTERCTL, "lab", "down", "--name", name], timeout=300)


def network_doc() -> dict[str, Any]:
    return {"apiVersion": "berth/v1", "kind": "Network", "metadata": {"name": NETWORK},
            "spec": {"driver": "overlay", "subnet": SUBNET}}


def idle_service_doc(name: str, node: str) -> dict[str, Any]:
    """One long-running busybox container pinned to ``node`` on the overlay network."""
    return {"apiVersion": "berth/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"replicas": 1, "image": "busybox:latest", "command": list(IDLE_COMMAND),
                     "networks": [NETWORK], "placement": {"node": node}}}


def manifest(docs: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def wait_running(lab: Lab, names: Sequence[str], timeout: float = 60.0) -> dict[str, Container]:
    """The named containers once all run with a pid and an overlay IP."""
    deadline = time.monotonic() + timeout
    while True:
        found = lab.containers()
        if all(n in found and found[n].state == "running" and found[n].pid and found[n].ip
               for n in names):
            return {n: found[n] for n in names}
        if time.monotonic() > deadline:
            raise BenchError(f"containers {', '.join(names)} not running after {timeout:.0f} s")
        time.sleep(0.2)


def link_mtu(netns_path: str, ifname: str = "eth0") -> int:
    # /sys would show the root netns's links; ask netlink inside the namespace instead.
    out = run(["nsenter", f"--net={netns_path}", "ip", "-o", "link", "show", ifname])
    words = out.split()
    return int(words[words.index("mtu") + 1])


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a helper started with ``start_new_session=True`` and everything it forked."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def nearest_rank(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value with at least pct% at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Iperf:
    bits_per_second: float
    retransmits: int


def iperf3(label: str, server_ns: str, port: int, client_ns: str, target: str,
           seconds: int, *, target_port: int = 0, bind: str = "") -> Iperf:
    """One iperf3 TCP run: a one-shot server in ``server_ns`` on ``port`` (bound to ``bind``
    when given), the client in ``client_ns`` sending to ``target:target_port`` (default
    ``port``; another one reaches the server through a DNAT)."""
    server = subprocess.Popen(
        ["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1", "-p", str(port),
         *(["-B", bind] if bind else [])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_listening(label, server_ns, server, port)
        client = subprocess.run(
            ["nsenter", f"--net={client_ns}", "iperf3", "-c", target,
             "-p", str(target_port or port), "-t", str(seconds), "-J"],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )
    finally:
        kill_group(server)
    try:
        result = json.loads(client.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{label}: iperf3 client exited {client.returncode}: "
                         f"{client.stderr.strip() or client.stdout.strip()}") from exc
    if "error" in result:
        raise BenchError(f"{label}: iperf3: {result['error']}")
    end = result["end"]
    return Iperf(float(end["sum_received"]["bits_per_second"]),
                 int(end["sum_sent"].get("retransmits", 0)))


def _wait_listening(label: str, server_ns: str, server: subprocess.Popen[bytes], port: int,
                    within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"{label}: iperf3 server exited {server.returncode} at start")
        if run(["nsenter", f"--net={server_ns}", "ss", "-Hltn", f"sport = :{port}"]).strip():
            return
        time.sleep(0.05)
    raise BenchError(f"{label}: iperf3 server not listening on {port} after {within:.0f} s")
