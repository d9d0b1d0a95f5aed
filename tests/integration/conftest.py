"""Fixtures that run a real etcd for integration tests.

``etcd_endpoint`` starts the Debian ``etcd`` binary on free 127.0.0.1 ports in a fresh data
dir, yields "127.0.0.1:PORT" once it answers gRPC, then kills it by PID and removes the dir.
``etcd`` yields a connected Etcd3Client for that endpoint. ``etcd_server`` is the EtcdServer
behind them (``stop()``/``start()`` restart it on the same ports and data), ``etcd_factory``
starts more (e.g. with TLS from ``etcd_tls``). ``run_etcd`` is the context manager behind all of
them. A missing etcd binary fails the test (tests/needs.py): the install script provides it.
``node_ns``/``node_rt`` (tests/agentnode.py) give agent tests a node netns and a Runtime in it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from berth.etcd import Etcd3Client
from protos.etcd import rpc_pb2, rpc_pb2_grpc
from tests import needs
from tests.agentnode import node_image, node_ns, node_rt  # noqa: F401  (fixtures)

ETCD_BINARY = "etcd"
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class EtcdTls:
    """PEM files for a TLS etcd: the server uses cert/key, clients trust ca.

    With client_cert/client_key, etcd also demands client certificates (--client-cert-auth)
    and the readiness probe presents them.
    """

    ca: Path
    cert: Path
    key: Path
    client_cert: Path | None = None
    client_key: Path | None = None


@dataclass
class EtcdServer:
    endpoint: str  # "127.0.0.1:PORT"
    data_dir: Path
    argv: list[str]
    log_path: Path
    tls: EtcdTls | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or start again, same ports and data) and wait until it answers."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL
            )
        _wait_until_answers(self)

    def stop(self) -> None:
        """Kill this etcd by PID; a no-op when it is not running."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(endpoint: str, tls: EtcdTls | None) -> bool:
    """True once etcd serves a Maintenance.Status call (it is up and has a leader)."""
    if tls is None:
        channel = grpc.insecure_channel(endpoint)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls.ca.read_bytes(),
            private_key=tls.client_key.read_bytes() if tls.client_key else None,
            certificate_chain=tls.client_cert.read_bytes() if tls.client_cert else None,
        )
        channel = grpc.secure_channel(endpoint, creds)
    with channel:
        stub = rpc_pb2_grpc.MaintenanceStub(channel)
        try:
            resp = stub.Status(rpc_pb2.StatusRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(resp.leader)


def _etcd_argv(name: str, data_dir: Path, client: str, peer: str, tls: EtcdTls | None) -> list[str]:
    scheme = "https" if tls else "http"
    argv = [
        ETCD_BINARY,
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={scheme}://{client}",
        f"--advertise-client-urls={scheme}://{client}",
        f"--listen-peer-urls=http://{peer}",
        f"--initial-advertise-peer-urls=http://{peer}",
        f"--initial-cluster={name}=http://{peer}",
        "--initial-cluster-state=new",
        "--logger=zap",
        "--log-outputs=stderr",
    ]
    if tls:
        argv += [f"--cert-file={tls.cert}", f"--key-file={tls.key}", f"--trusted-ca-file={tls.ca}"]
        if tls.client_cert:
            argv.append("--client-cert-auth")
    return argv


@contextlib.contextmanager
def run_etcd(workdir: Path | None = None, *, tls: EtcdTls | None = None) -> Iterator[EtcdServer]:
    """Start one etcd member; always kill it (by PID) and remove its directory."""
    needs.tool(ETCD_BINARY, "etcd-server")
    base = Path(tempfile.mkdtemp(prefix="bt-etcd-", dir=workdir))
    try:
        client_port = free_port()
        peer_port = free_port()
        while peer_port == client_port:
            peer_port = free_port()
        client, peer = f"127.0.0.1:{client_port}", f"127.0.0.1:{peer_port}"
        argv = _etcd_argv("bt-etcd", base / "data", client, peer, tls)
        server = EtcdServer(client, base / "data", argv, base / "etcd.log", tls)
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_answers(server: EtcdServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    assert server.proc is not None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"etcd exited with {server.proc.returncode}:\n{server.log_tail()}")
        if _answers(server.endpoint, server.tls):
            return
        time.sleep(0.1)
    raise RuntimeError(f"etcd did not answer within {START_TIMEOUT}s:\n{server.log_tail()}")


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    with run_etcd() as server:
        yield server


@pytest.fixture
def etcd_endpoint(etcd_server: EtcdServer) -> str:
    return etcd_server.endpoint


@pytest.fixture
async def etcd(etcd_endpoint: str) -> AsyncIterator[Etcd3Client]:
    async with Etcd3Client(etcd_endpoint) as client:
        yield client


@pytest.fixture
def etcd_factory() -> Iterator[Callable[..., EtcdServer]]:
    """Start extra etcd servers (e.g. ``etcd_factory(tls=EtcdTls(...))``); all stop at teardown."""
    with contextlib.ExitStack() as stack:

        def start(*, tls: EtcdTls | None = None) -> EtcdServer:
            return stack.enter_context(run_etcd(tls=tls))

        yield start


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def etcd_tls(tmp_path: Path) -> EtcdTls:
    """A throwaway CA, a server cert for 127.0.0.1 and a client cert (openssl CLI)."""
    needs.tool("openssl", "openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = tmp_path / "ca.pem", tmp_path / "ca.key"
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
             "-subj", "/CN=bt-etcd-test-ca")  # fmt: skip
    paths: dict[str, tuple[Path, Path]] = {}
    for name, usage in [("server", "serverAuth"), ("client", "clientAuth")]:
        cert, key, csr = (tmp_path / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
        ext_file = tmp_path / f"{name}.ext"
        ext_file.write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", "1",
                 "-extfile", str(ext_file))  # fmt: skip
        paths[name] = (cert, key)
    return EtcdTls(ca, *paths["server"], *paths["client"])
