"""``clusterctl info``: the controller's view of the whole cluster, for operators.

server.py's Info RPC calls ``info``. It reports berth's version, etcd's members (Cluster.
MemberList) with each one's health (a Maintenance.Status call to that member, with the
controller's own etcd identity), every node's host facts as its agent announced them
(berth.records.HostFacts: runtime, cgroup version, kernel, labels, which drivers it can
offer and why not), and the expiry dates of the controller's certificate and the
caller's when the API is served over TLS.

An etcd that does not answer is reported, not raised: info is what an operator runs
when something is wrong.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC
from importlib import metadata
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from berth.daemonflags import EtcdSettings
from berth.errors import BerthError
from berth.etcd import Etcd3Client, Member
from controller.state import ClusterState
from protos import controller_pb2

MEMBER_TIMEOUT = 2.0       # seconds for one member's status: a dead member must not stall info


@dataclass(frozen=True)
class InfoSource:
    """What info needs beyond the cluster state: how to reach etcd, which certificate is ours."""

    etcd: EtcdSettings
    tls_cert: str | None = None     # the controller's certificate file; None: TLS off


def version() -> str:
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _member_health(source: EtcdSettings, member: Member) -> controller_pb2.EtcdMember:
    row = controller_pb2.EtcdMember(
        name=member.name, id=f"{member.id:x}", client_urls=list(member.client_urls),
        peer_urls=list(member.peer_urls), learner=member.learner)
    if not member.client_urls:
        row.error = "no client URL (not started yet)"
        return row
    client = Etcd3Client(member.client_urls[0], ca_cert=source.ca, cert_cert=source.cert,
                         cert_key=source.key, timeout=MEMBER_TIMEOUT)
    try:
        async with client:
            status = await client.status()
    except BerthError as exc:
        row.error = str(exc)
        return row
    errors = status["errors"]
    problems = [str(e) for e in errors] if isinstance(errors, list) else []
    row.healthy = not problems
    row.error = "; ".join(problems)
    row.leader = status["leader"] == member.id
    row.version = str(status["version"])
    size = status["db_size"]
    row.db_size = size if isinstance(size, int) else 0
    return row


async def etcd_members(source: EtcdSettings) -> tuple[list[controller_pb2.EtcdMember], str]:
    """Every member with its health, or an empty list and why the list could not be read."""
    client = Etcd3Client(source.endpoint, ca_cert=source.ca, cert_cert=source.cert,
                         cert_key=source.key, timeout=MEMBER_TIMEOUT)
    try:
        async with client:
            members = await client.member_list()
    except BerthError as exc:
        return [], str(exc)
    rows = await asyncio.gather(*(_member_health(source, m) for m in members))
    return sorted(rows, key=lambda r: r.name), ""


def nodes(state: ClusterState) -> list[controller_pb2.NodeInfo]:
    out = []
    for name in sorted(set(state.nodes) | {a.node for a in state.assignments}):
        record = state.nodes.get(name)
        if record is None:
            out.append(controller_pb2.NodeInfo(name=name, status="NotReady"))
            continue
        facts = record.facts
        out.append(controller_pb2.NodeInfo(
            name=name, status="Ready", version=facts.version, kernel=facts.kernel,
            cgroup=facts.cgroup, runtime=facts.runtime, labels=dict(record.labels),
            drivers=[controller_pb2.DriverSupport(name=d.name, reason=d.reason)
                     for d in facts.drivers]))
    return out


def certificate(role: str, pem: bytes) -> controller_pb2.CertificateInfo:
    """A certificate's CN and expiry; a certificate that does not parse says so."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        return controller_pb2.CertificateInfo(role=role, error=f"not a PEM certificate: {exc}")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    not_after = cert.not_valid_after_utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return controller_pb2.CertificateInfo(role=role, subject=subject, not_after=not_after)


def _own_certificate(path: str) -> controller_pb2.CertificateInfo:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        return controller_pb2.CertificateInfo(role="controller",
                                              error=f"{path}: {exc.strerror or exc}")
    return certificate("controller", pem)


async def info(source: InfoSource, state: ClusterState,
               caller_pem: bytes | None) -> controller_pb2.InfoResponse:
    members, etcd_error = await etcd_members(source.etcd)
    resp = controller_pb2.InfoResponse(
        version=version(), etcd_members=members, etcd_error=etcd_error, nodes=nodes(state),
        tls=source.tls_cert is not None)
    if source.tls_cert is not None:
        resp.certificates.append(_own_certificate(source.tls_cert))
        if caller_pem:
            resp.certificates.append(certificate("caller", caller_pem))
    return resp
