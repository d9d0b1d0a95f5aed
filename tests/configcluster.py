"""A one-node cluster whose daemons take their settings from configuration files.

tests/integration/test_daemon_config.py uses it to show each key's effect on the real
binaries. Everything runs inside one network namespace the fixture makes
(``bt-cf-<random>``: lo, and an eth0 veth with a 10.79.x.2/24 address): etcd and the
controller on its 127.0.0.1, the agent on eth0, and clusterctl through nsenter. The
teardown stops the daemons by PID, deletes every container (a Runtime on the agent's
state), removes the cgroup parent and the namespace, also when a test failed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.runtime import cgroups, rootfs
from agent.runtime.containers import Runtime
from berth.busybox import build_busybox_image
from tests import needs

BIN = Path(sys.executable).parent
ETCD_PORT = 2379
CONTROLLER = "127.0.0.1:7700"
START_WAIT = 90.0           # a bound on start-up, not a timing claim


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it does not leave; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@dataclass
class ConfigCluster:
    netns: str
    ip: str
    root: Path
    daemons: dict[str, Daemon] = field(default_factory=dict)

    @property
    def agent_state(self) -> Path:
        return self.root / "agent-data"

    @property
    def controller_state(self) -> Path:
        return self.root / "controller-data"

    @property
    def cgroup_parent(self) -> str:
        return f"{self.netns}-cg"

    def in_ns(self, *argv: str, check: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done

    def ctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.in_ns(str(BIN / "clusterctl"), "--controller", CONTROLLER, *argv,
                          check=check)

    def ctl_json(self, *argv: str) -> Any:
        return json.loads(self.ctl(*argv, "-o", "json").stdout)

    def start(self, name: str, argv: list[str]) -> Daemon:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.daemons[name] = Daemon(name, proc, log)
        return self.daemons[name]

    def wait(self, what: str, ready: Any) -> None:
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            for daemon in self.daemons.values():
                if daemon.proc.poll() is not None:
                    raise AssertionError(f"{daemon.name} exited {daemon.proc.returncode} "
                                         f"while waiting for {what}:\n{daemon.tail()}")
            if ready():
                return
            time.sleep(0.3)
        logs = "\n".join(f"--- {d.name}\n{d.tail()}" for d in self.daemons.values())
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def node_ready(self) -> bool:
        done = self.ctl("get", "nodes", "-o", "json", check=False)
        if done.returncode:
            return False
        return any(n["status"] == "Ready" for n in json.loads(done.stdout))


def _etcd_argv(root: Path) -> list[str]:
    url = f"http://127.0.0.1:{ETCD_PORT}"
    peer = "http://127.0.0.1:2380"
    return [needs.tool("etcd", "etcd-server"), "--name", "cf", "--data-dir", str(root / "etcd"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"cf={peer}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr"]


def _make_netns(name: str, ip: str) -> None:
    sh("ip", "netns", "add", name)
    ns = ("ip", "-n", name)
    sh(*ns, "link", "set", "lo", "up")
    sh(*ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    sh(*ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    sh(*ns, "link", "set", "eth0p", "up")
    sh(*ns, "link", "set", "eth0", "up")


async def _delete_containers(cluster: ConfigCluster, runc: str) -> None:
    state = cluster.agent_state
    if not (state / "containers").is_dir():
        return
    runtime = Runtime(state, cluster.root / "runc", cluster.cgroup_parent, runtime_bin=runc)
    for container in await runtime.list():
        await runtime.delete(container.name)


def _teardown(cluster: ConfigCluster, runc: str) -> None:
    for name in ("agent", "controller", "etcd"):
        if name in cluster.daemons:
            cluster.daemons[name].stop()
    try:
        asyncio.run(_delete_containers(cluster, runc))
    finally:
        for path in sorted(rootfs.mountpoints(), reverse=True):
            if path.startswith(str(cluster.root)):
                subprocess.run(["umount", "-l", path], check=False)
        cgroups.remove_cgroup(cluster.cgroup_parent)
        subprocess.run(["ip", "netns", "del", cluster.netns], check=False)


@dataclass(frozen=True)
class Files:
    """The two configuration files, as dicts (paths filled in by ``config_cluster``)."""

    agent: dict[str, Any]
    controller: dict[str, Any]


def config_cluster(root: Path, files: Files) -> Iterator[ConfigCluster]:
    """Start etcd, the controller and the agent with ``files``; yield once the node is Ready
    and has the busybox image."""
    needs.root()
    runc = needs.tool("runc", "runc")
    needs.tool("conmon", "conmon")
    needs.tool("nsenter", "util-linux")
    netns = f"bt-cf-{secrets.token_hex(3)}"
    cluster = ConfigCluster(netns, f"10.79.{secrets.randbelow(200) + 20}.2", root)
    _make_netns(netns, cluster.ip)
    try:
        agent_file, ctl_file = root / "agent.json", root / "controller.json"
        agent_file.write_text(json.dumps(files.agent).replace("{ip}", cluster.ip))
        ctl_file.write_text(json.dumps(files.controller))
        cluster.start("etcd", _etcd_argv(root))
        cluster.wait("etcd", lambda: _etcd_answers(cluster))
        cluster.start("controller", [str(BIN / "berth-controller"), "--config", str(ctl_file),
                                     "--etcd", f"127.0.0.1:{ETCD_PORT}",
                                     "--metrics-listen", ""])
        cluster.start("agent", [str(BIN / "berth-agent"), "--config", str(agent_file),
                                "--node", "cf1", "--underlay-ip", cluster.ip,
                                "--etcd", f"127.0.0.1:{ETCD_PORT}", "--controller", CONTROLLER,
                                "--runtime-root", str(root / "runc"),
                                "--cgroup-parent", cluster.cgroup_parent,
                                "--metrics-listen", ""])
        cluster.wait("the node to be Ready", cluster.node_ready)
        image = build_busybox_image(root / "busybox.tar")
        cluster.ctl("image", "load", str(image))
        yield cluster
    finally:
        _teardown(cluster, runc)


def _etcd_answers(cluster: ConfigCluster) -> bool:
    """etcd's gRPC health, asked from inside the namespace with the venv's grpc."""
    probe = ("import grpc,sys\nfrom protos.etcd import rpc_pb2, rpc_pb2_grpc\n"
             f"ch = grpc.insecure_channel('127.0.0.1:{ETCD_PORT}')\n"
             "try:\n rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), "
             "timeout=1)\nexcept grpc.RpcError:\n sys.exit(1)\n")
    return cluster.in_ns(sys.executable, "-c", probe, check=False).returncode == 0
