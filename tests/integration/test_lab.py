"""The lab's topology, restart and teardown, with etcd only (``_daemons=False``).

Each test brings labs up with unique names and removes them in ``finally``; every
assertion is about what a user of the machine would see: namespaces, links, routes,
mounts, cgroups and processes before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import UserError
from berth.tls import channel as tls_channel
from clusterctl import contexts, lab
from clusterctl.lab import LabError, LabInfo, cleanup
from clusterctl.lab.lab import add_context
from clusterctl.lab.state import lab_dir
from protos import controller_pb2, controller_pb2_grpc
from tests import needs

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs() -> None:
    needs.root()
    needs.tool("etcd", "etcd-server")

SUFFIX = str(os.getpid() % 100000)


def _lab_name(tag: str) -> str:
    return f"t{tag}{SUFFIX}"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


def _in_ns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("nsenter", f"--net=/run/netns/{netns}", *argv, check=check)


_LAB_NAMED = re.compile(r"\bbl-([a-z0-9]+)|/labs/([a-z0-9]+)")


def _ours(line: str) -> bool:
    # Other people use this machine concurrently; compare only what a lab could touch,
    # and leave out labs this module did not start (another test run's e2e lab, say).
    named = [a or b for a, b in _LAB_NAMED.findall(line)]
    if any(not lab_name.endswith(SUFFIX) for lab_name in named):
        return False
    return "bl-" in line or "10.251." in line or "/berth/" in line or line.startswith("default")


def snapshot() -> dict[str, set[str]]:
    with open("/proc/self/mountinfo") as f:
        mounts = {line.split()[4] for line in f}
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    routes += _run("ip", "-6", "route", "show", "table", "all").stdout.splitlines()
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    return {
        "sysctls": {f"net.ipv4.ip_forward={forwarding}"},
        "links": {x for x in os.listdir("/sys/class/net") if _ours(x)},
        "netns": {x for x in netns if _ours(x)},
        "mounts": {x for x in mounts if _ours(x)},
        "routes": {x for x in routes if _ours(x)},
    }


def _etcd_health_from_root(info: LabInfo) -> str:
    # An empty ProxyHandler: never route lab traffic through a proxy from the environment.
    tls = info.tls("admin")
    context = ssl.create_default_context(cafile=tls.ca)
    context.load_cert_chain(tls.cert, tls.key)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    with opener.open(f"https://{info.etcd}/health", timeout=5) as reply:
        return str(json.loads(reply.read())["health"])


def _curl_etcd(info: LabInfo, netns: str, etcd: str, *, cert: bool = True,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """GET etcd's /health from ``netns`` over TLS, with admin's certificate unless not ``cert``."""
    tls = info.tls("admin")
    auth = ["--cert", tls.cert, "--key", tls.key] if cert else []
    return _in_ns(netns, "curl", "-s", "--noproxy", "*", "-m", "5", "--cacert", tls.ca,
                  *auth, f"https://{etcd}/health", check=check)


def _down_quietly(*names: str) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            asyncio.run(lab.down(name))


@pytest.fixture(scope="module")
def two_labs() -> Iterator[tuple[LabInfo, LabInfo, dict[str, set[str]]]]:
    names = _lab_name("a"), _lab_name("b")
    before = snapshot()
    try:

        async def both() -> list[LabInfo]:
            return list(
                await asyncio.gather(*(lab.up(n, 2, _daemons=False) for n in names))
            )

        first, second = asyncio.run(both())
        yield first, second, before
    finally:
        _down_quietly(*names)


def test_hosts_reach_each_other_and_etcd(two_labs: tuple[LabInfo, LabInfo, object]) -> None:
    info = two_labs[0]
    h1, h2 = info.hosts
    ping = _in_ns(h1.netns, "busybox", "ping", "-c", "1", "-W", "2", h2.underlay_ip)
    assert "1 packets received" in ping.stdout
    for host in info.hosts:
        health = _curl_etcd(info, host.netns, info.etcd)
        assert json.loads(health.stdout)["health"] == "true"
    # etcd demands a client certificate, and speaks no plaintext.
    assert _curl_etcd(info, h1.netns, info.etcd, cert=False, check=False).returncode != 0
    plain = _in_ns(h1.netns, "curl", "-s", "--noproxy", "*", "-m", "5",
                   f"http://{info.etcd}/health", check=False)  # fmt: skip
    assert "true" not in plain.stdout


def test_root_reaches_etcd_and_gains_only_the_connected_route(
    two_labs: tuple[LabInfo, LabInfo, dict[str, set[str]]],
) -> None:
    info, _, before = two_labs
    assert _etcd_health_from_root(info) == "true"
    main = _run("ip", "-4", "route", "show").stdout.splitlines()
    gained = [line for line in main if f"bl-{info.name}" in line]
    assert [line.split()[:3] for line in gained] == [[info.subnet, "dev", f"bl-{info.name}"]]
    v6 = _run("ip", "-6", "route", "show", "table", "all").stdout
    assert f"bl-{info.name}" not in v6
    # Nothing that arrives from the lab is routed on, even where the machine forwards.
    assert Path(f"/proc/sys/net/ipv4/conf/bl-{info.name}/forwarding").read_text() == "0\n"
    now = snapshot()
    assert {r for r in now["routes"] if r.startswith("default")} == {
        r for r in before["routes"] if r.startswith("default")
    }
    assert now["links"] - before["links"] == {f"bl-{n}" for n in (info.name, two_labs[1].name)}


def test_lab_hosts_have_no_way_out(two_labs: tuple[LabInfo, LabInfo, object]) -> None:
    info = two_labs[0]
    for host in info.hosts:
        routes = _in_ns(host.netns, "ip", "-4", "route", "show").stdout.splitlines()
        # The subnet, and exactly one extra route: the outside host's test range.
        assert [r.split()[:3] for r in routes] == [
            [info.subnet, "dev", "eth0"], ["198.51.100.0/24", "via", info.outside.lab_ip]]
        # `ip route get` only asks the kernel; nothing is sent.
        probe = _in_ns(host.netns, "ip", "route", "get", "203.0.113.1", check=False)
        assert probe.returncode != 0
        assert "unreachable" in probe.stderr.lower()
        forwarding = _in_ns(host.netns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout
        assert forwarding.strip() == "1"
    outside = _in_ns(info.outside.netns, "ip", "-4", "route", "show").stdout.splitlines()
    assert [r.split()[0] for r in outside] == [info.subnet]
    ctl = _in_ns(f"bl-{info.name}-ctl", "ip", "-4", "route", "show").stdout.splitlines()
    assert [r.split()[0] for r in ctl] == [info.subnet]


def test_outside_host_answers_lab_hosts_only(
    two_labs: tuple[LabInfo, LabInfo, dict[str, set[str]]],
) -> None:
    """What egress tests rely on: 198.51.100.1 in bl-<lab>-out, reached from every host with
    the host's own lab address as source, and from nowhere else."""
    info, other, before = two_labs
    assert info.outside.netns == f"bl-{info.name}-out"
    assert (info.outside.address, info.outside.routed) == ("198.51.100.1", "198.51.100.0/24")
    assert info.outside.lab_ip == str(ipaddress.IPv4Network(info.subnet)[254])
    listed = json.loads(_run(sys.executable, "-m", "clusterctl.main", "lab", "status",
                             "--name", info.name, "-o", "json").stdout)  # fmt: skip
    assert listed[0]["outside"] == {"netns": info.outside.netns, "address": "198.51.100.1",
                                    "lab_ip": info.outside.lab_ip, "routed": "198.51.100.0/24"}
    table = _run(sys.executable, "-m", "clusterctl.main", "lab", "status", "--name", info.name)
    assert (f"  outside: 198.51.100.1 (netns bl-{info.name}-out, via {info.outside.lab_ip})"
            in table.stdout.splitlines())
    server = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{info.outside.netns}", sys.executable, "-m",
         "http.server", "--bind", "198.51.100.1", "8080", "--directory", "/nonexistent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for host in info.hosts:
            assert "1 packets received" in _in_ns(
                host.netns, "busybox", "ping", "-c", "1", "-W", "2", "198.51.100.1").stdout
            for _ in range(50):
                got = _in_ns(host.netns, "curl", "-s", "--noproxy", "*", "-m", "2", "-o",
                             "/dev/null", "-w", "%{http_code}", "http://198.51.100.1:8080/",
                             check=False)  # fmt: skip
                if got.stdout == "404":
                    break
                time.sleep(0.1)
            assert got.stdout == "404"
    finally:
        server.terminate()
        _, log = server.communicate(timeout=10)
    # The outside host saw each host's own lab address as the source.
    sources = [line.split()[0] for line in log.splitlines() if '"GET / ' in line]
    assert sources == [h.underlay_ip for h in info.hosts]
    # The control netns has no route to it; another lab's hosts reach their own outside host.
    ctl = _in_ns(f"bl-{info.name}-ctl", "ip", "route", "get", "198.51.100.1", check=False)
    assert ctl.returncode != 0
    theirs = _in_ns(other.hosts[0].netns, "ip", "route", "get", "198.51.100.1").stdout
    assert f"via {other.outside.lab_ip} " in theirs
    # The root netns gained no route to it (nor forwarding: snapshot() compares that).
    assert "198.51.100." not in _run("ip", "-4", "route", "show", "table", "all").stdout
    assert snapshot()["sysctls"] == before["sysctls"]


def test_two_labs_get_distinct_subnets_and_are_listed(
    two_labs: tuple[LabInfo, LabInfo, object],
) -> None:
    first, second = two_labs[0], two_labs[1]
    assert first.subnet != second.subnet
    listed = {info.name: info for info in lab.status()}
    assert {first.name, second.name} <= set(listed)
    assert listed[first.name].running
    assert lab.status(first.name)[0].hosts[1].underlay_ip == first.hosts[1].underlay_ip
    # Labs do not see each other: first's hosts cannot reach second's etcd.
    probe = _curl_etcd(second, first.hosts[0].netns, second.etcd, check=False)
    assert probe.returncode != 0


def test_up_again_restarts_a_killed_process_only() -> None:
    name = _lab_name("r")
    try:
        info = asyncio.run(lab.up(name, 1, _daemons=False))
        entry = contexts.load().find(name)
        assert entry is not None and entry.server == info.controller
        assert entry.cert == str(info.pki / "admin.crt")
        os.kill(info.pids["etcd"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while lab.status(name)[0].alive["etcd"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lab.status(name)[0].alive == {"etcd": False}
        again = asyncio.run(lab.up(name, 1, _daemons=False))
        assert again.pids["etcd"] != info.pids["etcd"]
        assert again.alive == {"etcd": True}
        assert again.subnet == info.subnet
        assert _etcd_health_from_root(again) == "true"
        # Nothing is missing now, so a third up changes nothing.
        assert asyncio.run(lab.up(name, 1, _daemons=False)).pids == again.pids
        with pytest.raises(LabError, match="exists with 1 hosts"):
            asyncio.run(lab.up(name, 2, _daemons=False))
    finally:
        _down_quietly(name)
    cfg = contexts.load()
    assert cfg.find(name) is None and cfg.current_context != name


def _cgroup_root() -> Path:
    unified = Path("/sys/fs/cgroup")
    return unified if (unified / "cgroup.controllers").exists() else unified / "pids"


def test_down_removes_what_agents_would_leave(two_labs: object) -> None:
    """A mount, a cgroup with a process, and a process in a host netns all go away."""
    name = _lab_name("d")
    before = snapshot()
    stray: subprocess.Popen[bytes] | None = None
    try:
        info = asyncio.run(lab.up(name, 2, _daemons=False))
        mnt = info.hosts[0].state_dir / "rootfs"
        mnt.mkdir(parents=True)
        _run("mount", "-t", "tmpfs", "tmpfs", str(mnt))
        stray = subprocess.Popen(["nsenter", f"--net=/run/netns/{info.hosts[1].netns}",
                                  "sleep", "300"])  # fmt: skip
        group = _cgroup_root() / f"berth-{name}-h2" / "ctr"
        group.mkdir(parents=True)
        (group / "cgroup.procs").write_text(str(stray.pid))
        found = "\n".join(lab.leftovers(name))
        for expected in (f"netns bl-{name}-h1", f"link bl-{name}", f"mount {mnt}",
                         f"cgroup {group.parent}", f"process {stray.pid}"):  # fmt: skip
            assert expected in found
        messages: list[str] = []
        asyncio.run(lab.down(name, progress=messages.append))
        assert messages[-1] == f"lab {name} removed"
        assert stray.wait(timeout=5) == -signal.SIGKILL
        assert lab.leftovers(name) == []
        assert not group.parent.exists()
        assert snapshot() == before
        asyncio.run(lab.down(name, progress=messages.append))
        assert messages[-1] == f"lab {name} does not exist; nothing to do"
    finally:
        _down_quietly(name)
        if stray is not None and stray.poll() is None:
            stray.kill()
            stray.wait()


def test_down_removes_the_outside_host_even_of_a_stale_lab() -> None:
    """A lab whose state file is lost (a crash, a wiped /var/lib) still loses its outside
    host, and what a test left running in it, on ``down``."""
    name = _lab_name("s")
    before = snapshot()
    server: subprocess.Popen[bytes] | None = None
    try:
        info = asyncio.run(lab.up(name, 1, _daemons=False))
        assert os.path.exists(f"/run/netns/{info.outside.netns}")
        server = subprocess.Popen(["nsenter", f"--net=/run/netns/{info.outside.netns}",
                                   "sleep", "300"])  # fmt: skip
        (lab_dir(name) / "lab.json").unlink()
        assert lab.status(name) == []
        found = "\n".join(lab.leftovers(name))
        assert f"netns {info.outside.netns}" in found and f"process {server.pid}" in found
        asyncio.run(lab.down(name))
        assert server.wait(timeout=5) == -signal.SIGKILL
        assert not os.path.exists(f"/run/netns/{info.outside.netns}")
        assert lab.leftovers(name) == []
        assert snapshot() == before
    finally:
        _down_quietly(name)
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()


def test_failed_up_removes_what_it_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = _lab_name("f")
    before = snapshot()
    # etcd missing from PATH is what a machine without etcd-server looks like.
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/sbin:/sbin")
    try:
        with pytest.raises(LabError, match="etcd not found"):
            asyncio.run(lab.up(name, 1, _daemons=False))
        assert lab.leftovers(name) == []
        assert lab.status(name) == []
        assert snapshot() == before
    finally:
        monkeypatch.undo()
        _down_quietly(name)


@pytest.mark.parametrize(
    "bad", ["Web", "toolongname", "a-b", ""], ids=["upper", "long", "dash", "empty"]
)
def test_bad_names_are_user_errors(bad: str) -> None:
    with pytest.raises(UserError, match="invalid lab name"):
        asyncio.run(lab.up(bad, 1, _daemons=False))
    assert not os.path.exists(f"/run/netns/bl-{bad}-sw")


def test_bad_host_count_is_a_user_error() -> None:
    with pytest.raises(UserError, match="1 to 50 hosts"):
        asyncio.run(lab.up(_lab_name("n"), 0, _daemons=False))


SLEEPERS = b"""apiVersion: berth/v1
kind: Service
metadata: {name: sleeper}
spec: {replicas: 2, image: "busybox:latest", command: [sleep, "3000"]}
"""


def _daemons_installed() -> bool:
    return all(
        shutil.which(n) or os.path.exists(os.path.join(os.path.dirname(sys.executable), n))
        for n in ("berth-controller", "berth-agent")
    )


async def _controller_call(info: LabInfo, method: str, request: object) -> object:
    options = [("grpc.enable_http_proxy", 0)]
    async with tls_channel(info.controller, info.tls("admin"), options) as channel:
        stub = controller_pb2_grpc.ControllerStub(channel)
        return await getattr(stub, method)(request, timeout=10)


def _containers_when_running(info: LabInfo, want: int) -> list[controller_pb2.Container]:
    """All containers once ``want`` of them ran or failed, or whatever there is after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        reply = asyncio.run(
            _controller_call(info, "Get", controller_pb2.GetRequest(kind="containers"))
        )
        assert isinstance(reply, controller_pb2.GetResponse)
        containers = list(reply.containers)
        settled = [c for c in containers if c.state in ("running", "failed", "exited")]
        if len(settled) >= want or time.monotonic() > deadline:
            return containers
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def _daemons() -> None:
    if not _daemons_installed():
        pytest.fail("berth-controller/berth-agent missing: pip install -e . (scripts/install.sh)",
                    pytrace=False)


needs_daemons = pytest.mark.usefixtures("_daemons")


@needs_daemons
def test_full_lab_restarts_an_agent_and_down_removes_it() -> None:
    """With the real daemons: nodes Ready, busybox loaded, a killed agent restarted."""
    name = _lab_name("w")
    before = snapshot()
    messages: list[str] = []
    try:
        info = asyncio.run(lab.up(name, 2, progress=messages.append, within=120))
        assert set(info.pids) == {"etcd", "controller", "agent-h1", "agent-h2"}
        assert all(info.alive.values())
        assert "loaded image busybox:latest" in messages
        assert "nodes ready: 2/2" in messages
        nodes = asyncio.run(_controller_call(info, "Get", controller_pb2.GetRequest(kind="nodes")))
        assert isinstance(nodes, controller_pb2.GetResponse)
        assert {(n.name, n.status) for n in nodes.nodes} == {("h1", "Ready"), ("h2", "Ready")}

        os.kill(info.pids["agent-h1"], signal.SIGKILL)
        again = asyncio.run(lab.up(name, 2, within=120))
        assert again.pids["agent-h1"] != info.pids["agent-h1"]
        unchanged = {k: v for k, v in info.pids.items() if k != "agent-h1"}
        assert {k: v for k, v in again.pids.items() if k != "agent-h1"} == unchanged
        assert all(again.alive.values())

        asyncio.run(lab.down(name))
        assert lab.leftovers(name) == []
        assert snapshot() == before
        assert not any(_alive(pid) for pid in again.pids.values())
    finally:
        _down_quietly(name)


@needs_daemons
def test_down_removes_running_containers() -> None:
    """Containers (runc, conmon, overlay mounts, cgroups) do not survive ``down``."""
    name = _lab_name("c")
    before = snapshot()
    try:
        info = asyncio.run(lab.up(name, 2, within=120))
        request = controller_pb2.ApplyRequest(source="sleepers.yaml", manifest=SLEEPERS)
        asyncio.run(_controller_call(info, "Apply", request))
        containers = _containers_when_running(info, 2)
        states = [(c.name, c.state, c.error) for c in containers]
        assert [s[1] for s in states] == ["running", "running"], states
        found = "\n".join(lab.leftovers(name))
        assert "cgroup " in found and "/rootfs" in found and "conmon" in found

        asyncio.run(lab.down(name))
        assert lab.leftovers(name) == []
        assert snapshot() == before
        survivors = [c.name for c in containers if _alive(c.pid)]
        assert survivors == [], f"containers survived down: {survivors}"
    finally:
        _down_quietly(name)


def test_up_selects_its_context_only_when_none_is_and_down_removes_it(
    two_labs: tuple[LabInfo, LabInfo, object],
) -> None:
    first = two_labs[0]
    name = _lab_name("o")
    try:
        contexts.use(first.name)
        asyncio.run(lab.up(name, 1, _daemons=False))
        cfg = contexts.load()
        assert cfg.current_context == first.name        # another lab never takes over
        assert cfg.find(name) is not None
        asyncio.run(lab.down(name))
        cfg = contexts.load()
        assert (cfg.current_context, cfg.find(name)) == (first.name, None)

        contexts.remove(first.name)                     # nothing selected now
        contexts.update(lambda c: setattr(c, "current_context", None))
        asyncio.run(lab.up(name, 1, _daemons=False))
        assert contexts.load().current_context == name
        asyncio.run(lab.down(name))
        assert contexts.load().current_context is None
    finally:
        _down_quietly(name)
        add_context(first)


def _fake_conmon(*args: str) -> subprocess.Popen[bytes]:
    # A process whose argv[0] is "conmon", as Podman's or another lab's would be.
    return subprocess.Popen(["conmon", "-c", "import time; time.sleep(300)", *args],
                            executable=sys.executable)  # fmt: skip


def test_cleanup_kills_only_conmons_that_name_this_lab() -> None:
    name = _lab_name("m")
    cdir = lab_dir(name) / "hosts" / "h1" / "containers" / "web-1"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cdir.mkdir(parents=True)
        ours = _fake_conmon("-b", str(cdir), "-P", str(cdir / "conmon.pid"))
        stranger = _fake_conmon("-b", "/var/lib/containers/abc", "-P", "/run/abc/conmon.pid")
        procs += [ours, stranger]
        (cdir / "conmon.pid").write_text(f"{ours.pid}\n")
        # A stale pid file whose pid now belongs to somebody else's conmon.
        (cdir / "ctr.pid").write_text(f"{stranger.pid}\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(
            _cmdline_starts(p.pid, "conmon") for p in procs
        ):
            time.sleep(0.02)
        assert cleanup.conmon_pids(name) == [ours.pid]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(lab_dir(name), ignore_errors=True)


def _cmdline_starts(pid: int, argv0: str) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(argv0.encode() + b"\0")
    return False
