"""The daemons' configuration files, on the real binaries: refusals and each key's effect.

The refusals start berth-agent and berth-controller with a bad file: exit code 1 and
exactly one line naming the file and the key. The effects run a one-node cluster
(tests/configcluster.py) whose agent and controller take every setting from their files,
and look where a user would: ``clusterctl get nodes`` and ``info``, the bridge's MTU, the
container's address and resolv.conf, the log files on disk, the daemons' logs, the state
directories, and what happens to containers when the agent stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from agent.runtime.containers import Runtime
from agent.runtime.logrotate import log_files, rotated_name
from berth import pki
from berth.lifecycle import ContainerState
from netplugins.bridge.config import bridge_name
from tests.configcluster import ConfigCluster, Files, config_cluster
from tests.e2e.conftest import wait_until
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
MAX_SIZE, MAX_FILE = 16 * 1024, 3
MTU = 1400
AGENT_PORT = 7072           # not the default 7071: the agent's hosts key moved it
DNS = "10.79.0.53"
# ~200 KB of log, then a marker and quiet: rotation has to keep MAX_FILE files of MAX_SIZE.
CHATTY = """\
apiVersion: berth/v1
kind: Service
metadata: {name: chatty}
spec:
  image: busybox:latest
  command: [sh, -c, "i=0; while [ $i -lt 3000 ]; do echo line-$i-%s; i=$((i+1)); done;
    echo done-marker; exec sleep 3600"]
""" % ("x" * 50)
FILLER = """\
apiVersion: berth/v1
kind: Service
metadata: {name: filler}
spec:
  image: busybox:latest
  replicas: 2
  command: [sleep, "3600"]
"""


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("daemon", "content", "problem"),
    [
        pytest.param("agent", {"max-sise": "10m"}, '"max-sise": unknown key', id="agent-unknown"),
        pytest.param("agent", {"log-opts": {"max-size": 10}},
                     '"log-opts.max-size": expected a string such as "10m"', id="agent-bad"),
        pytest.param("agent", {"registry-mirrors": ["https://m.example"]},
                     '"registry-mirrors": not supported yet', id="agent-not-yet"),
        pytest.param("agent", {"hosts": ["unix:///run/berth.sock"]},
                     "\"hosts\": 'unix:///run/berth.sock': berth listens on TCP only "
                     "(tcp://HOST:PORT)", id="agent-unix-host"),
        pytest.param("controller", {"max-sise": "10m"}, '"max-sise": unknown key',
                     id="controller-unknown"),
        pytest.param("controller", {"max-replicas": "5"}, '"max-replicas": expected integer',
                     id="controller-bad"),
        pytest.param("controller", {"insecure-registries": []},
                     '"insecure-registries": not supported yet', id="controller-not-yet"),
        pytest.param("controller", {"tls": True},
                     '"tls": true without "tlsverify": berth\'s roles come from client '
                     'certificates, so set "tlsverify": true', id="tls-without-verify"),
        pytest.param("agent", {"tlscert": "/etc/berth/pki/node-h1.crt"},
                     '"tlscert": given without "tlsverify": true (berth serves mTLS or '
                     'plaintext, nothing between)', id="tlscert-without-verify"),
        pytest.param("agent", {"tlsverify": True, "tlscacert": "/nonexistent/ca.crt"},
                     '"tlscacert": /nonexistent/ca.crt: no such file', id="tls-missing-file"),
    ],
)
def test_a_bad_file_stops_the_daemon_with_one_line_and_exit_1(
        tmp_path: Path, daemon: str, content: dict[str, Any], problem: str) -> None:
    path = tmp_path / f"{daemon}.json"
    path.write_text(json.dumps(content))
    argv = [str(BIN / f"berth-{daemon}"), "--config", str(path)]
    if daemon == "agent":
        argv += ["--underlay-ip", "10.0.0.1"]
    done = run(*argv)
    assert (done.returncode, done.stderr, done.stdout) == (
        1, f"berth-{daemon}: {path}: {problem}\n", "")


def test_a_key_given_by_flag_and_file_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"data-root": "/var/lib/x", "debug": True, "mtu": 1400}))
    done = run(str(BIN / "berth-agent"), "--config", str(path), "--underlay-ip", "10.0.0.1",
               "--state-dir", "/srv/y", "--debug")
    assert done.returncode == 1
    assert done.stderr == (
        f"berth-agent: {path}: the following directives are specified both as a flag and "
        f'in the configuration file: "data-root" (flag --state-dir /srv/y), "debug" '
        f"(flag --debug true)\n")


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    done = run(str(BIN / "berth-controller"), "--config", str(tmp_path / "nope.json"))
    assert done.returncode == 1
    assert done.stderr == (f"berth-controller: {tmp_path / 'nope.json'}: cannot read the "
                           f"configuration file: No such file or directory\n")


# --- effects --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfigCluster]:
    root = tmp_path_factory.mktemp("cfg")
    traced = root / "traced-runc"
    traced.write_text(f'#!/bin/sh\necho "$@" >> {root}/runtime-calls\nexec runc "$@"\n')
    traced.chmod(0o755)
    files = Files(
        agent={
            "data-root": str(root / "agent-data"), "debug": True,
            "labels": ["zone=a", "disk=ssd"], "mtu": MTU, "dns": [DNS],
            "bip": "10.201.0.1/24", "live-restore": False,
            "log-opts": {"max-size": f"{MAX_SIZE // 1024}k", "max-file": str(MAX_FILE)},
            "default-runtime": "traced", "runtimes": {"traced": {"path": str(traced)}},
            "max-image-archive-size": "64m", "hosts": [f"tcp://{{ip}}:{AGENT_PORT}"],
        },
        controller={
            "data-root": str(root / "controller-data"), "debug": True,
            "hosts": ["tcp://127.0.0.1:7700"], "max-replicas": 5,
            "max-containers-per-node": 3, "max-image-archive-size": "4m",
        },
    )
    yield from config_cluster(root, files)     # {ip}: the node's address, picked there


@pytest.fixture(scope="module")
def chatty(cluster: ConfigCluster) -> dict[str, Any]:
    path = cluster.root / "chatty.yaml"
    path.write_text(CHATTY)
    cluster.ctl("apply", "-f", str(path), "--wait", "--timeout", "120")
    containers = cluster.ctl_json("get", "containers")
    return next(c for c in containers if c["name"] == "chatty-1")


def test_labels_show_in_get_nodes(cluster: ConfigCluster) -> None:
    table = cluster.ctl("get", "nodes").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ADDRESS", "CONTAINERS", "LABELS"]
    assert table[1].split()[-1] == "disk=ssd,zone=a"
    [node] = cluster.ctl_json("get", "nodes")
    assert node["labels"] == {"disk": "ssd", "zone": "a"}


def test_info_shows_etcd_nodes_and_tls_off(cluster: ConfigCluster) -> None:
    data = cluster.ctl_json("info")
    [member] = data["etcd"]["members"]
    assert (member["name"], member["healthy"], member["leader"]) == ("cf", True, True)
    [node] = data["nodes"]
    assert node["labels"] == {"disk": "ssd", "zone": "a"}
    assert node["runtime"].startswith(str(cluster.root / "traced-runc") + " (runc version")
    assert node["kernel"] == os.uname().release
    assert node["cgroup"] in ("v1", "v2")
    assert set(node["drivers"]) == {"host", "none", "container", "bridge", "overlay",
                                    "macvlan", "macvlan 802.1q"}
    # What the node says about 802.1q is what this kernel does (the VM tests have 8021q).
    vlan = run("unshare", "--net", "sh", "-c", "ip link add p0 type veth peer name p1 && "
               "ip link add p0.10 link p0 type vlan id 10")
    dot1q = node["drivers"]["macvlan 802.1q"]
    assert dot1q == ({"available": True, "reason": ""} if vlan.returncode == 0
                     else {"available": False, "reason": "no kernel support"})
    assert node["drivers"]["bridge"] == {"available": True, "reason": ""}
    assert data["tls"] is False and data["certificates"] == []
    text = cluster.ctl("info").stdout
    assert "TLS off: the controller serves plaintext" in text
    assert "  cf (" in text and "healthy, leader" in text


def test_default_runtime_from_runtimes_runs_the_containers(cluster: ConfigCluster,
                                                          chatty: dict[str, Any]) -> None:
    calls = (cluster.root / "runtime-calls").read_text().splitlines()
    assert any(" create " in f" {c} " and "chatty-1" in c for c in calls), calls


def test_bip_and_mtu_shape_the_default_network(cluster: ConfigCluster,
                                               chatty: dict[str, Any]) -> None:
    assert chatty["networks"]["bridge"]["ip"].startswith("10.201.0.")
    link = cluster.in_ns("ip", "-o", "link", "show", bridge_name("bridge")).stdout
    assert f" mtu {MTU} " in link
    inside = cluster.ctl("exec", "chatty-1", "--", "cat", "/sys/class/net/eth0/mtu").stdout
    assert inside.strip() == str(MTU)


def test_dns_is_the_containers_resolver(cluster: ConfigCluster, chatty: dict[str, Any]) -> None:
    resolv = cluster.ctl("exec", "chatty-1", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {DNS}" in resolv.splitlines()


def test_log_opts_keep_max_file_files_of_max_size(cluster: ConfigCluster,
                                                  chatty: dict[str, Any]) -> None:
    cdir = cluster.agent_state / "containers" / "chatty-1"

    def settled() -> bool:
        last = cluster.ctl("logs", "--tail", "1", "--no-timestamps", "chatty-1").stdout
        return last.strip() == "done-marker" and len(log_files(cdir)) <= MAX_FILE

    wait_until("the log to settle", settled, timeout=120)
    files = log_files(cdir)
    sizes = {p.name: p.stat().st_size for p in files}
    assert (cdir / rotated_name(MAX_FILE - 1)).exists(), sizes      # it did rotate, to the end
    assert not (cdir / rotated_name(MAX_FILE)).exists(), sizes
    assert len(files) <= MAX_FILE and max(sizes.values()) <= MAX_SIZE, sizes


def test_data_root_holds_the_state(cluster: ConfigCluster, chatty: dict[str, Any]) -> None:
    assert (cluster.agent_state / "containers" / "chatty-1" / "config.json").is_file()
    assert any((cluster.agent_state / "images").iterdir())
    assert any((cluster.controller_state / "images").iterdir())


def test_debug_logs_debug_lines(cluster: ConfigCluster) -> None:
    for name in ("agent", "controller"):
        assert " DEBUG " in cluster.daemons[name].log.read_text(), name


def test_size_bounds_are_enforced(cluster: ConfigCluster, chatty: dict[str, Any]) -> None:
    big = cluster.root / "big.tar"
    big.write_bytes(os.urandom(5 << 20))
    done = cluster.ctl("image", "load", str(big), check=False)
    assert done.returncode != 0
    assert f"larger than the limit of {4 << 20} bytes" in done.stderr
    too_many = cluster.root / "six.yaml"
    too_many.write_text(FILLER.replace("replicas: 2", "replicas: 6"))
    done = cluster.ctl("apply", "-f", str(too_many), check=False)
    assert done.returncode != 0 and "5 replicas" in done.stderr, done.stderr


def test_max_containers_per_node_leaves_the_rest_pending(cluster: ConfigCluster,
                                                         chatty: dict[str, Any]) -> None:
    path = cluster.root / "filler.yaml"
    path.write_text(FILLER.replace("replicas: 2", "replicas: 3"))
    cluster.ctl("apply", "-f", str(path))

    def placed() -> list[str]:
        return sorted(c["state"] for c in cluster.ctl_json("get", "containers")
                      if c["service"] == "filler")

    wait_until("two fillers running", lambda: placed().count("running") == 2, timeout=90)
    assert placed() == ["pending", "running", "running"]
    cluster.ctl("delete", "-f", str(path))


def test_hosts_is_where_the_agent_listens(cluster: ConfigCluster) -> None:
    [node] = cluster.ctl_json("get", "nodes")
    assert node["agent_addr"] == f"{cluster.ip}:{AGENT_PORT}"
    listening = cluster.in_ns("ss", "-Hltn", f"sport = :{AGENT_PORT}").stdout
    # ss prints an IPv4 address on a dual-stack socket as [::ffff:10.79.x.2]:7072.
    assert listening.split()[3].endswith(f"{cluster.ip}]:{AGENT_PORT}") or (
        listening.split()[3] == f"{cluster.ip}:{AGENT_PORT}"), listening


def test_live_restore_off_stops_containers_when_the_agent_exits(
        cluster: ConfigCluster, chatty: dict[str, Any]) -> None:
    [current] = [c for c in cluster.ctl_json("get", "containers") if c["name"] == "chatty-1"]
    pid = current["pid"]
    assert pid > 0 and Path(f"/proc/{pid}").exists()
    assert cluster.daemons["agent"].stop() == 0
    assert not Path(f"/proc/{pid}").exists()
    runtime = Runtime(cluster.agent_state, cluster.root / "runc", cluster.cgroup_parent)
    container = asyncio.run(runtime.state("chatty-1"))
    assert container.state == ContainerState.EXITED and container.pid == 0, container



# --- TLS keys -------------------------------------------------------------------------


def test_tls_keys_in_the_file_serve_mtls_and_info_shows_expiry(
        tmp_path: Path, etcd_endpoint: str) -> None:
    certs = tmp_path / "pki"
    pki.ensure_dir(certs)
    pki.issue(certs, pki.Identity("admin"))
    pki.issue(certs, pki.Identity("controller"), pki.parse_sans(["127.0.0.1"]))
    address = f"127.0.0.1:{free_port()}"
    path = tmp_path / "controller.json"
    path.write_text(json.dumps({
        "hosts": [f"tcp://{address}"], "data-root": str(tmp_path / "ctl"),
        "tls": True, "tlsverify": True, "tlscacert": str(certs / "ca.crt"),
        "tlscert": str(certs / "controller.crt"), "tlskey": str(certs / "controller.key")}))
    contexts = tmp_path / "berth-config"
    contexts.write_text(yaml.safe_dump({"current-context": "cf", "contexts": [{
        "name": "cf", "server": address, "ca": str(certs / "ca.crt"),
        "cert": str(certs / "admin.crt"), "key": str(certs / "admin.key")}]}))
    env = {**os.environ, "BERTH_CONFIG": str(contexts)}
    env.pop("BERTH_CONTEXT", None)
    env.pop("BERTH_CONTROLLER", None)
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "berth-controller"), "--config", str(path),
                                 "--etcd", etcd_endpoint, "--metrics-listen", ""],
                                stdout=out, stderr=out)
    try:
        def info(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(BIN / "clusterctl"), *argv, "info", "-o", "json"],
                                  capture_output=True, text=True, timeout=60, env=env,
                                  check=False)

        wait_until("the controller", lambda: proc.poll() is not None or
                   info().returncode == 0, timeout=60)
        assert proc.poll() is None, log.read_text()
        data = json.loads(info().stdout)
        expiry = {name: x509.load_pem_x509_certificate((certs / f"{name}.crt").read_bytes())
                  .not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
                  for name in ("controller", "admin")}
        assert data["tls"] is True
        assert data["certificates"] == [
            {"role": "controller", "subject": "controller", "not_after": expiry["controller"],
             "error": ""},
            {"role": "caller", "subject": "admin", "not_after": expiry["admin"], "error": ""}]
        plaintext = info("--controller", address)
        assert plaintext.returncode != 0 and "this was plaintext" in plaintext.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
