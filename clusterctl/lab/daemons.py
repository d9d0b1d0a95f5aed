"""The lab's daemons: etcd and the controller in the ctl netns, one agent per host netns.

Makes the lab's PKI (``ensure_pki``: a CA, admin, controller, one node certificate
per host and etcd's), so every hop runs mTLS: etcd serves clients and its peer port
with TLS and --client-cert-auth, both daemons serve with --tlsverify and present
their own certificate to etcd and to each other. Builds each daemon's argv, starts
what is not running (a restart reuses the recorded argv), and waits for each to be
usable: etcd healthy, controller accepting gRPC, the busybox image loaded, every node
Ready. Waiting also watches the process, so a daemon that dies fails ``up`` at once
with its log tail instead of after the timeout. Called by ``lab.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from berth import grpcopts, pki
from berth.aio import woken
from berth.errors import BerthError
from berth.etcd import Etcd3Client, rbac
from berth.tls import TlsSettings
from berth.tls import channel as tls_channel
from clusterctl.lab import process
from clusterctl.lab.errors import LabError
from clusterctl.lab.state import (
    AGENT_PORT,
    CONTROLLER_METRICS_PORT,
    CONTROLLER_PORT,
    ETCD_PORT,
    LabState,
    ProcessRecord,
    lab_dir,
    netns_prefix,
    pki_dir,
    run_dir,
    save,
)
from protos import common_pb2, controller_pb2, controller_pb2_grpc

Progress = Callable[[str], None]
CHUNK = 1 << 20
# Never let grpc pick up a proxy from the environment: lab addresses are local only.
GRPC_OPTIONS = [("grpc.enable_http_proxy", 0), *grpcopts.channel_options()]


class _NotYet(Exception):
    """The awaited condition does not hold yet; tenacity retries on it."""


def find_program(name: str) -> str:
    """A console script of this venv first (next to sys.executable), else PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


ETCD_MEMBER = pki.Identity("etcd", "ctl")


def ensure_pki(state: LabState) -> None:
    """The lab's CA and every identity it runs; what exists is kept (keys never rewritten)."""
    directory = pki_dir(state.name)
    pki.ensure_dir(directory)
    wanted: list[tuple[pki.Identity, list[str]]] = [
        (pki.Identity("admin"), []),
        (pki.Identity("controller"), [state.ctl_ip]),
        (ETCD_MEMBER, [state.ctl_ip, "127.0.0.1"]),
    ]
    wanted += [(pki.Identity("node", host), [state.host_ip(i)])
               for i, host in enumerate(state.host_names(), start=1)]
    for ident, sans in wanted:
        if not pki.exists(directory, ident):
            pki.issue(directory, ident, pki.parse_sans(sans))
    if not (directory / pki.CRL).exists():
        pki.write_crl(directory)


def tls_of(state: LabState, stem: str) -> TlsSettings:
    d = pki_dir(state.name)
    return TlsSettings(str(d / "ca.crt"), str(d / f"{stem}.crt"), str(d / f"{stem}.key"))


def _tls_flags(state: LabState, stem: str) -> list[str]:
    """A daemon's identity, to etcd and on its own gRPC API (mTLS both ways)."""
    tls = tls_of(state, stem)
    return [
        "--etcd-ca", tls.ca, "--etcd-cert", tls.cert, "--etcd-key", tls.key,
        "--tlsverify", "--tlscacert", tls.ca, "--tlscert", tls.cert, "--tlskey", tls.key,
    ]  # fmt: skip


def etcd_argv(state: LabState) -> list[str]:
    ip, data = state.ctl_ip, lab_dir(state.name) / "etcd"
    peer = "https://127.0.0.1:2380"
    tls = tls_of(state, ETCD_MEMBER.stem)
    crl = str(pki_dir(state.name) / pki.CRL)
    return [
        find_program("etcd"), "--name", "ctl", "--data-dir", str(data),
        "--listen-client-urls", f"https://{ip}:{ETCD_PORT}",
        "--advertise-client-urls", f"https://{ip}:{ETCD_PORT}",
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"ctl={peer}", "--initial-cluster-state", "new",
        "--initial-cluster-token", f"berth-lab-{state.name}",
        "--trusted-ca-file", tls.ca, "--cert-file", tls.cert, "--key-file", tls.key,
        "--client-cert-auth", "--client-crl-file", crl,
        "--peer-trusted-ca-file", tls.ca, "--peer-cert-file", tls.cert,
        "--peer-key-file", tls.key, "--peer-client-cert-auth", "--peer-crl-file", crl,
        "--logger", "zap", "--log-outputs", "stderr",
    ]  # fmt: skip


def controller_argv(state: LabState) -> list[str]:
    ip = state.ctl_ip
    return [
        find_program("berth-controller"), "--listen", f"{ip}:{CONTROLLER_PORT}",
        "--etcd", f"{ip}:{ETCD_PORT}", "--state-dir", str(lab_dir(state.name) / "controller"),
        "--metrics-listen", f"{ip}:{CONTROLLER_METRICS_PORT}", *_tls_flags(state, "controller"),
    ]  # fmt: skip


def agent_argv(state: LabState, index: int) -> list[str]:
    host, ip, ctl = f"h{index}", state.host_ip(index), state.ctl_ip
    return [
        find_program("berth-agent"), "--node", host,
        "--listen", f"{ip}:{AGENT_PORT}", "--etcd", f"{ctl}:{ETCD_PORT}",
        "--controller", f"{ctl}:{CONTROLLER_PORT}",
        "--underlay-ip", ip, "--underlay-dev", "eth0",
        "--state-dir", str(lab_dir(state.name) / "hosts" / host),
        "--runtime", "runc", "--runtime-root", str(run_dir(state.name) / host / "runc"),
        "--cgroup-parent", f"berth-{state.name}-{host}",
        # The lab has no way out, so containers' unknown names must fail fast
        # rather than be forwarded to the machine's own resolvers.
        "--dns-upstreams", "none", *_tls_flags(state, f"node-{host}"),
    ]  # fmt: skip


def log_path(state: LabState, role: str) -> Path:
    return lab_dir(state.name) / "logs" / f"{role}.log"


def ensure_process(state: LabState, role: str, netns_suffix: str, argv: list[str]) -> bool:
    """Start ``role`` unless its recorded PID still runs it. True when it was (re)started."""
    known = state.processes.get(role)
    if known is not None:
        if process.is_ours(known.pid, known.argv):
            return False
        argv = list(known.argv)
    log = log_path(state, role)
    ns = netns_prefix(state.name) + netns_suffix
    pid = process.spawn(ns, argv, log)
    state.processes[role] = ProcessRecord(netns=ns, argv=tuple(argv), pid=pid, log=str(log))
    save(state)
    return True


def _check_alive(state: LabState, role: str) -> None:
    record = state.processes[role]
    if not process.is_ours(record.pid, record.argv):
        raise LabError(
            f"{role} exited during start-up; see {record.log}:\n{process.tail(Path(record.log))}"
        )


async def _wait(
    state: LabState, roles: list[str], within: float, what: str,
    probe: Callable[[], Awaitable[None]],
) -> None:  # fmt: skip
    """Retry ``probe`` until it stops raising _NotYet; fail fast if a daemon died."""

    async def attempt() -> None:
        for role in roles:
            _check_alive(state, role)
        await probe()

    try:
        async for retry in AsyncRetrying(
            stop=stop_after_delay(within), wait=wait_fixed(0.3),
            retry=retry_if_exception_type(_NotYet), reraise=True,
        ):  # fmt: skip
            with retry:
                await attempt()
    except _NotYet as exc:
        logs = ", ".join(state.processes[r].log for r in roles)
        raise LabError(f"{what} not ready after {within:.0f}s ({exc}); see {logs}") from exc


async def wait_etcd(state: LabState, within: float) -> None:
    """Until etcd answers a Status call over mTLS (as admin) and has a leader."""
    tls = tls_of(state, "admin")

    async def probe() -> None:
        etcd = Etcd3Client(f"{state.ctl_ip}:{ETCD_PORT}", ca_cert=tls.ca, cert_cert=tls.cert,
                           cert_key=tls.key, timeout=2.0)
        try:
            async with etcd:
                status = await etcd.status()
        except BerthError as exc:
            raise _NotYet(f"etcd: {exc}") from exc
        if not status.get("leader"):
            raise _NotYet("etcd has no leader yet")

    await _wait(state, ["etcd"], within, "etcd", probe)


async def ensure_rbac(state: LabState) -> list[str]:
    """etcd RBAC on, with a confined user per lab host (berth.etcd.rbac); the changes made.

    Run after etcd answers and before any daemon uses it: the controller and agents then
    reach etcd as their certificate CNs, and a node can write only its own keys.
    """
    tls = tls_of(state, "admin")
    try:
        async with Etcd3Client(f"{state.ctl_ip}:{ETCD_PORT}", ca_cert=tls.ca,
                               cert_cert=tls.cert, cert_key=tls.key) as etcd:
            changes = await rbac.bootstrap(etcd)
            for host in state.host_names():
                changes += await rbac.add_node(etcd, host)
    except BerthError as exc:
        raise LabError(f"turning on etcd RBAC: {exc}") from exc
    return changes


def channel(state: LabState) -> grpc.aio.Channel:
    """clusterctl's way to the lab's controller: mTLS as admin."""
    return tls_channel(f"{state.ctl_ip}:{CONTROLLER_PORT}", tls_of(state, "admin"),
                       GRPC_OPTIONS)


async def wait_controller(state: LabState, within: float) -> None:
    async def probe() -> None:
        async with channel(state) as ch:
            if not await woken(ch.channel_ready(), 1.0):
                raise _NotYet("controller port closed")

    await _wait(state, ["controller"], within, "controller", probe)


async def load_image(state: LabState, tar: Path) -> list[str]:
    """Stream ``tar`` to the controller's ImageLoad: a filename frame, then 1 MiB chunks."""

    async def frames() -> AsyncIterator[common_pb2.ImageChunk]:
        yield common_pb2.ImageChunk(filename=tar.name)
        f = await asyncio.to_thread(tar.open, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield common_pb2.ImageChunk(data=chunk)
        finally:
            f.close()

    async with channel(state) as ch:
        stub = controller_pb2_grpc.ControllerStub(ch)
        try:
            reply = await stub.ImageLoad(frames(), timeout=120)
        except grpc.aio.AioRpcError as exc:
            raise LabError(f"loading {tar} into the lab failed: {exc.details()}") from exc
    refs = list(reply.refs)
    if not any(ref.endswith("busybox:latest") for ref in refs):
        raise LabError(f"loading {tar} gave {refs or 'no image names'}, not busybox:latest")
    return refs


async def wait_nodes(state: LabState, within: float, progress: Progress) -> None:
    wanted = set(state.host_names())
    roles = ["controller"] + [f"agent-{h}" for h in state.host_names()]
    seen = [-1]

    async def probe() -> None:
        async with channel(state) as ch:
            stub = controller_pb2_grpc.ControllerStub(ch)
            try:
                reply = await stub.Get(controller_pb2.GetRequest(kind="nodes"), timeout=5)
            except grpc.aio.AioRpcError as exc:
                raise _NotYet(f"controller: {exc.details()}") from exc
        ready = {n.name for n in reply.nodes if n.status == "Ready"} & wanted
        if len(ready) != seen[0]:
            seen[0] = len(ready)
            progress(f"nodes ready: {len(ready)}/{len(wanted)}")
        if ready != wanted:
            raise _NotYet(f"not Ready: {', '.join(sorted(wanted - ready))}")

    await _wait(state, roles, within, "nodes", probe)
