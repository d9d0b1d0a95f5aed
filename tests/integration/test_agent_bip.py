"""berth-agent's implicit network subnets, read against a real node's addresses.

A node netns (bt-bip-<random>) with eth0 on 172.17.3.2/24, the first of Docker's pools:
the agent must go around it by default, and refuse a --bip on the node's own LAN before
it serves anything. The agent runs in that netns (nsenter) and is stopped by its PID.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.implicitnets import STATE_FILE
from tests import needs

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "berth-agent")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def node_ns() -> Iterator[str]:
    needs.root()
    name = f"bt-bip-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        sh("ip", "-n", name, "addr", "add", "172.17.3.2/24", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0p", "up")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def agent_argv(node_ns: str, state: Path, *extra: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{node_ns}", AGENT, "--node", "bip-node",
            "--underlay-ip", "172.17.3.2", "--state-dir", str(state / "agent"),
            "--runtime-root", str(state / "runc"), "--cgroup-parent", "bt-bip",
            "--etcd", "127.0.0.1:9", "--metrics-listen", "", *extra]


def test_a_bip_on_the_nodes_own_lan_is_refused_in_one_line(node_ns: str,
                                                           tmp_path: Path) -> None:
    done = subprocess.run(agent_argv(node_ns, tmp_path, "--bip", "172.17.0.1/16"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == ("berth-agent: --bip 172.17.0.1/16: overlaps node bip-node's "
                           "address 172.17.3.2/24 on eth0\n")
    assert not (tmp_path / "agent" / STATE_FILE).exists()


def test_defaults_go_around_the_nodes_address(node_ns: str, tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(agent_argv(node_ns, tmp_path), stdout=subprocess.DEVNULL,
                                stderr=out)
    chosen = tmp_path / "agent" / STATE_FILE
    try:
        for _ in range(100):        # a bounded wait for the start-up, not a timing claim
            if chosen.exists() or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        assert json.loads(chosen.read_text()) == {"bip": "172.18.0.1/16",
                                                  "gwbridge": "172.19.0.1/16"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
