"""Issue 2's walking skeleton on a one-host lab, through clusterctl as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Lab, wait_until
from tests.metricsread import Samples, scrape_until

pytestmark = pytest.mark.e2e

WEB = """\
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  image: busybox:latest
  command: [sleep, "3600"]
"""

TALKER = """\
apiVersion: berth/v1
kind: Service
metadata: {name: talker}
spec:
  image: busybox:latest
  command: [sh, -c, "echo first line; echo hello from berth; exec sleep 3600"]
"""

# Docker's default capability set, as /proc/<pid>/status prints CapEff.
DOCKER_CAPEFF = "00000000a80425fb"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) ")


@pytest.fixture(scope="module")
def lab(
    lab_factory: Callable[[int], Lab], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    lab = lab_factory(1)
    path = tmp_path_factory.mktemp("m") / "web.yaml"
    path.write_text(WEB)
    lab.ctl("apply", "-f", str(path), "--wait")
    yield lab


def test_replicas_run(lab: Lab) -> None:
    rows = lab.containers()
    assert {rows["web-1"]["state"], rows["web-2"]["state"]} == {"running"}
    assert rows["web-1"]["service"] == "web"
    assert rows["web-1"]["node"] == "h1"
    # No networks: the default network, on the node's bip.
    assert list(rows["web-1"]["networks"]) == ["bridge"]


def test_daemons_serve_metrics(lab: Lab) -> None:
    """Both daemons' /metrics parse and count what `get containers` shows: 2 running."""
    def running(daemon: str) -> Callable[[Samples], bool]:
        key = ("berth_containers", (("daemon", daemon), ("state", "running")))
        return lambda samples: samples.get(key) == 2

    agent = scrape_until(lab.info["hosts"][0]["agent_metrics"], running("agent"))
    controller = scrape_until(lab.info["controller_metrics"], running("controller"))
    for daemon, samples in (("agent", agent), ("controller", controller)):
        passes = ("berth_reconcile_passes_total", (("daemon", daemon), ("outcome", "ok")))
        assert samples[passes] >= 1
        assert samples[("berth_reconcile_pass_seconds_count", (("daemon", daemon),))] >= 1


def test_exec_hostname_is_container_name(lab: Lab) -> None:
    assert lab.ctl("exec", "web-1", "--", "hostname").stdout.strip() == "web-1"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["sh", "-c", "exit 7"], 7, id="command-exit-code"),
        pytest.param(["no-such-command"], 127, id="not-found-127"),
        pytest.param(["/etc/passwd"], 126, id="not-executable-126"),
    ],
)
def test_exec_exit_codes(lab: Lab, argv: list[str], code: int) -> None:
    assert lab.ctl("exec", "web-1", "--", *argv, check=False).returncode == code


def test_exec_unknown_container_is_berth_failure(lab: Lab) -> None:
    proc = lab.ctl("exec", "nope-1", "--", "true", check=False)
    assert proc.returncode == 125
    assert "nope-1" in proc.stderr


def test_inside_container(lab: Lab) -> None:
    assert lab.ctl("exec", "web-1", "--", "cat", "/proc/1/cmdline").stdout == "sleep\x003600\x00"
    # Masked paths are /dev/null inside. This kernel may lack /proc/kcore altogether;
    # then it must be absent inside too, and the other masked files prove the mask.
    masked = ["/proc/keys", "/proc/timer_list"]
    if Path("/proc/kcore").exists():
        masked.append("/proc/kcore")
    else:
        assert (
            lab.ctl("exec", "web-1", "--", "test", "-e", "/proc/kcore", check=False).returncode == 1
        )
    for path in masked:
        devno = lab.ctl("exec", "web-1", "--", "stat", "-c", "%F %t:%T", path).stdout.strip()
        assert devno == "character special file 1:3", (path, devno)
    bundle = Path(lab.info["hosts"][0]["state_dir"]) / "containers" / "web-1"
    config = json.loads((bundle / "config.json").read_text())
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    status = lab.ctl("exec", "web-1", "--", "cat", "/proc/self/status").stdout
    assert re.search(r"^CapEff:\s+(\w+)$", status, re.M).group(1) == DOCKER_CAPEFF  # type: ignore[union-attr]
    # The other replica runs the same command; this container must see only itself.
    ps = lab.ctl("exec", "web-1", "--", "ps", "-o", "pid,args").stdout
    assert ps.count("sleep 3600") == 1


def test_logs_have_timestamps(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "talker.yaml"
    path.write_text(TALKER)
    lab.ctl("apply", "-f", str(path), "--wait")
    wait_until("talker output", lambda: "hello from berth" in lab.ctl("logs", "talker-1").stdout)
    lines = lab.ctl("logs", "talker-1").stdout.splitlines()
    assert [RFC3339.sub("", ln) for ln in lines] == ["first line", "hello from berth"]
    assert all(RFC3339.match(ln) for ln in lines)
    tail = lab.ctl("logs", "--tail", "1", "talker-1").stdout.splitlines()
    assert [RFC3339.sub("", ln) for ln in tail] == ["hello from berth"]
    lab.ctl("delete", "-f", str(path))


def _cgroup_dirs(name: str) -> list[str]:
    found = []
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(root, d) for d in dirs if d == name]
    return found


def test_live_restore(lab: Lab) -> None:
    before = lab.containers()
    host = lab.info["hosts"][0]
    os.kill(int(host["agent_pid"]), signal.SIGKILL)
    # While the agent is down the containers keep running; one of them exits.
    for name in ("web-1", "web-2"):
        os.kill(before[name]["pid"], 0)
    os.kill(before["web-2"]["pid"], signal.SIGKILL)
    lab.ctl("lab", "up", "--name", lab.name, "--hosts", "1")
    lab.refresh()
    assert lab.info["hosts"][0]["agent_pid"] != host["agent_pid"]

    def reported() -> bool:
        rows = lab.containers()
        return rows["web-2"]["state"] == "exited" and rows["web-2"]["exit_code"] == 137

    try:
        wait_until("web-2 reported exited with 137", reported)
    except AssertionError:
        # Failed once under load (never since): keep what the next occurrence needs.
        log = Path(lab.info["state_dir"]) / "logs" / "agent-h1.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        raise AssertionError(
            f"web-2 is {lab.containers().get('web-2')}; agent log:\n{tail}") from None
    after = lab.containers()
    assert after["web-1"]["state"] == "running"
    assert after["web-1"]["pid"] == before["web-1"]["pid"]
    assert after["web-1"]["started_at"] == before["web-1"]["started_at"]


def test_delete_removes_everything(lab: Lab) -> None:
    pids = {n: r["pid"] for n, r in lab.containers().items() if n.startswith("web-")}
    lab.ctl("delete", "service", "web")
    wait_until(
        "web containers gone", lambda: not any(n.startswith("web-") for n in lab.containers())
    )
    for pid in pids.values():
        if pid:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    state_dir = Path(lab.info["state_dir"])
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"{state_dir}/hosts/h1/containers/web-" not in mounts
    parent = lab.info["hosts"][0]["cgroup_parent"]
    assert [d for d in _cgroup_dirs("web-1") + _cgroup_dirs("web-2") if parent in d] == []
    assert not list(state_dir.glob("hosts/*/containers/web-*"))
    runc = subprocess.run(
        ["runc", "--root", lab.info["hosts"][0]["runtime_root"], "list", "-q"],
        capture_output=True,
        text=True,
    )
    assert "web-" not in runc.stdout


BAD = {
    "misspelled-field": (
        "apiVersion: berth/v1\nkind: Service\nmetadata: {name: bad}\n"
        "spec: {image: busybox:latest, replicsa: 2}\n",
        "Service/bad: spec.replicsa",
    ),
    "wrong-type": (
        "apiVersion: berth/v1\nkind: Service\nmetadata: {name: bad}\n"
        "spec: {image: busybox:latest, replicas: two}\n",
        "Service/bad: spec.replicas",
    ),
    "unknown-kind": (
        "apiVersion: berth/v1\nkind: Servce\nmetadata: {name: bad}\nspec: {}\n",
        "document 2: kind",
    ),
    "unsupported-field": (
        "apiVersion: berth/v1\nkind: Service\nmetadata: {name: bad}\n"
        "spec: {image: busybox:latest, volumes: ['/data:/data']}\n",
        "Service/bad: spec.volumes",
    ),
}
GOOD_FIRST = (
    "apiVersion: berth/v1\nkind: Service\nmetadata: {name: fine}\n"
    "spec: {image: busybox:latest}\n---\n"
)


def _etcd_dump(lab: Lab) -> dict[str, bytes]:
    import asyncio

    async def dump() -> dict[str, bytes]:
        # Everything the controller writes on apply, directly or through the scheduler.
        found: dict[str, bytes] = {}
        async with lab.etcd() as etcd:
            for prefix in ("desired", "assign", "ipam", "vni", "netstate"):
                listing = await etcd.get_prefix(f"/berth/{prefix}/")
                found |= {meta.key: value for value, meta in listing.items}
        return found

    return asyncio.run(dump())


@pytest.mark.parametrize(("text", "where"), list(BAD.values()), ids=list(BAD))
def test_bad_input_writes_nothing(lab: Lab, tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.yaml"
    # A valid first document proves the file is all-or-nothing.
    path.write_text(GOOD_FIRST + text)
    before = _etcd_dump(lab)
    proc = lab.ctl("apply", "-f", str(path), check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and where in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert _etcd_dump(lab) == before


def test_image_load_oci_layout(lab: Lab, tmp_path: Path) -> None:
    from berth.busybox import build_busybox_image
    from tests.imagekit import busybox_layer, make_layer, write_oci_layout

    base = busybox_layer(build_busybox_image(tmp_path / "busybox.tar"))
    extra = make_layer([("etc/motd", b"loaded through clusterctl\n", None)])
    archive = write_oci_layout(tmp_path / "oci.tar", [base, extra], "example.org/team/motd:v1")
    proc = lab.ctl("image", "load", str(archive))
    assert "example.org/team/motd:v1" in proc.stdout
    path = tmp_path / "motd.yaml"
    path.write_text(
        "apiVersion: berth/v1\nkind: Service\nmetadata: {name: motd}\n"
        "spec: {image: 'example.org/team/motd:v1',\n"
        "       command: [sh, -c, 'cat /etc/motd; sleep 3600']}\n"
    )
    lab.ctl("apply", "-f", str(path), "--wait")
    wait_until("motd output", lambda: "loaded through" in lab.ctl("logs", "motd-1").stdout)
    lab.ctl("delete", "-f", str(path))


def test_image_load_rejects_garbage(lab: Lab, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive")
    proc = lab.ctl("image", "load", str(junk), check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
