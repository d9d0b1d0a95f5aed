"""``clusterctl netcheck`` on a 3-host lab: a green matrix on a healthy lab, and a named
fault after an FDB entry is deleted by hand.

When the agent repairs such an entry: its overlay host resyncs every FDB and neighbour
entry on each change of the network's endpoints in etcd and otherwise every 30 s
(OverlayHost's ``resync_interval``; the registry builds it with the default). Nothing in
this test changes endpoints, so a deleted entry stays deleted until the next periodic
pass: up to 30 s, while netcheck takes a few. The deletion can still land just before a
pass; then netcheck sees a healed lab and exits 0, and the test deletes the entry again
(at most a few times). netcheck itself reads the agents' facts before it probes, and a
resync only repairs, so a probe that fails is always explained by facts that show the
fault.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Lab, wait_until
from tests.e2e.test_overlay import manifest, reaches

pytestmark = pytest.mark.e2e

WEB = ("web-1", "web-2", "web-3")
NETCHECK_FAILED = 9


@pytest.fixture(scope="module")
def lab(
    lab_factory: Callable[[int], Lab], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    lab = lab_factory(3)
    tmp = tmp_path_factory.mktemp("m")
    lab.ctl("apply", "-f", manifest(tmp, "appnet", "10.42.0.0/24", "web", 3), "--wait")
    lab.ctl("apply", "-f", manifest(tmp, "othernet", "10.43.0.0/24", "db", 2), "--wait")
    # Settled by the same yardstick test_overlay uses, not by netcheck itself.
    for src, dst in [*itertools.permutations(WEB, 2), ("db-1", "db-2"), ("db-2", "db-1")]:
        reaches(lab, src, dst)
    yield lab


def netcheck_json(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.ctl("netcheck", *args, "-o", "json", check=False)
    assert proc.returncode in (0, NETCHECK_FAILED), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_healthy_lab_is_a_full_green_matrix(lab: Lab) -> None:
    proc = lab.ctl("netcheck", "-o", "plain", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    rows = {w[0]: w[1:] for w in map(str.split, lines) if w and "@h" in w[0]}
    web_rows = [r for name, r in rows.items() if name.startswith("web-")]
    assert len(web_rows) == 3 and all(sorted(r) == ["-", "ok", "ok"] for r in web_rows)
    assert lines[-1] == "every pair behaves as its network promises"

    code, data = netcheck_json(lab)
    assert code == 0 and data["ok"] is True
    nets = {n["name"]: n for n in data["networks"]}
    # Overlay-only replicas also join the gateway bridge: listed, never probed (icc off).
    assert set(nets) == {"appnet", "othernet", "berth-gwbridge"}
    assert {c["status"] for c in nets["berth-gwbridge"]["cells"]} == {"skip"}
    appnet = nets["appnet"]
    assert sorted(c["node"] for c in appnet["containers"]) == ["h1", "h2", "h3"]
    assert len(appnet["cells"]) == 6 and {c["status"] for c in appnet["cells"]} == {"ok"}
    for cell in appnet["cells"]:
        assert sorted(p["kind"] for p in cell["probes"]) == ["dns", "ping", "route"]
        assert all(p["ok"] for p in cell["probes"])
    # Pairs on different networks are not pairs: no cell joins web and db.
    assert all(c["from"].startswith("db-") and c["to"].startswith("db-")
               for c in nets["othernet"]["cells"])


def test_one_network_and_bad_requests(lab: Lab) -> None:
    code, data = netcheck_json(lab, "othernet")
    assert code == 0 and [n["name"] for n in data["networks"]] == ["othernet"]
    missing = lab.ctl("netcheck", "nosuch", check=False)
    assert missing.returncode == 3
    assert missing.stderr.strip() == ('Error: network "nosuch" not found (no Network of that '
                                      "name and no container attached to it)")
    bad = lab.ctl("netcheck", "-o", "yaml", check=False)
    assert bad.returncode == 1 and "unknown output format 'yaml'" in bad.stderr


def _delete_fdb(lab: Lab, host: str, mac: str, vni: int, dst_ip: str) -> None:
    netns = next(h["netns"] for h in lab.info["hosts"] if h["name"] == host)
    subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "bridge", "fdb", "del", mac,
                    "dev", f"vx-{vni}", "dst", dst_ip], check=True, capture_output=True,
                   timeout=30)


def test_deleted_fdb_entry_names_the_host_and_the_peer(lab: Lab, tmp_path: Path) -> None:
    rows = lab.containers()
    vni = {n["name"]: n["vni"] for n in json.loads(lab.ctl("get", "networks", "-o",
                                                           "json").stdout)}["appnet"]
    underlay = {h["name"]: h["underlay_ip"] for h in lab.info["hosts"]}
    by_node = {rows[w]["node"]: w for w in WEB}
    src, peer = by_node["h1"], by_node["h2"]
    peer_ip = rows[peer]["networks"]["appnet"]["ip"]
    peer_mac = rows[peer]["networks"]["appnet"]["mac"]
    for _attempt in range(5):
        _delete_fdb(lab, "h1", peer_mac, vni, underlay["h2"])
        code, data = netcheck_json(lab, "appnet")
        if code != 0:
            break
        # The agent's periodic resync restored the entry before the probes ran.
    assert code == NETCHECK_FAILED
    (net,) = data["networks"]
    failing = {(c["from"], c["to"]): c for c in net["cells"] if c["status"] != "ok"}
    assert set(failing) == {(src, peer), (peer, src)}, failing
    want = f"h1 has no FDB entry for {peer_ip} ({peer} on h2, MAC {peer_mac})"
    assert want in failing[(src, peer)]["diagnosis"]
    assert f"{want}: replies from {src} are lost" in failing[(peer, src)]["diagnosis"]
    ping = next(p for p in failing[(src, peer)]["probes"] if p["kind"] == "ping")
    assert (ping["ok"], ping["detail"]) == (False, "timeout")

    # The agent repairs the entry on its next resync, and netcheck goes green again.
    wait_until("netcheck green after the resync",
               lambda: lab.ctl("netcheck", "appnet", check=False).returncode == 0, timeout=90)
