"""controller.info and clusterctl.info: what ``clusterctl info`` says, from records and certs."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from berth.daemonflags import EtcdSettings
from berth.records import DriverSupport, HostFacts, NodeRecord
from clusterctl import info as render
from controller import info
from controller.state import ClusterState

FACTS = HostFacts(version="0.1.0", kernel="6.1.0-13-amd64", cgroup="v2",
                  runtime="/usr/bin/runc (runc version 1.1.5)",
                  drivers=(DriverSupport(name="bridge"),
                           DriverSupport(name="macvlan 802.1q", reason="no kernel support")))


def cert_pem(cn: str, not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(not_after - datetime.timedelta(days=30))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def state() -> ClusterState:
    record = NodeRecord(name="h1", address="10.0.0.1", agent_addr="10.0.0.1:7071",
                        labels={"zone": "a"}, facts=FACTS)
    return ClusterState(revision=1, nodes={"h1": record})


def test_nodes_carry_their_facts_and_labels() -> None:
    [node] = info.nodes(state())
    assert (node.name, node.status, node.kernel, node.cgroup) == (
        "h1", "Ready", "6.1.0-13-amd64", "v2")
    assert dict(node.labels) == {"zone": "a"}
    assert [(d.name, d.reason) for d in node.drivers] == [
        ("bridge", ""), ("macvlan 802.1q", "no kernel support")]


def test_an_unreachable_etcd_is_reported_not_raised() -> None:
    resp = asyncio.run(info.info(info.InfoSource(EtcdSettings("127.0.0.1:9")), state(), None))
    assert resp.etcd_error and not resp.etcd_members
    assert resp.tls is False and not resp.certificates
    text = render.text(resp)
    assert "cannot list members" in text
    assert "TLS off: the controller serves plaintext" in text
    assert "    not:      macvlan 802.1q: no kernel support" in text.splitlines()
    assert "    labels:   zone=a" in text.splitlines()


def test_certificates_show_their_expiry(tmp_path: Path) -> None:
    when = datetime.datetime(2027, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    own = tmp_path / "controller.crt"
    own.write_bytes(cert_pem("controller", when))
    source = info.InfoSource(EtcdSettings("127.0.0.1:9"), tls_cert=str(own))
    resp = asyncio.run(info.info(source, state(), cert_pem("admin", when)))
    assert resp.tls is True
    assert [(c.role, c.subject, c.not_after) for c in resp.certificates] == [
        ("controller", "controller", "2027-03-04T05:06:07Z"),
        ("caller", "admin", "2027-03-04T05:06:07Z")]
    data = render.as_dict(resp)
    assert data["certificates"][1] == {"role": "caller", "subject": "admin",
                                       "not_after": "2027-03-04T05:06:07Z", "error": ""}
    assert "  caller (admin): expires 2027-03-04T05:06:07Z" in render.text(resp).splitlines()


def test_an_unreadable_certificate_says_why(tmp_path: Path) -> None:
    source = info.InfoSource(EtcdSettings("127.0.0.1:9"), tls_cert=str(tmp_path / "gone.crt"))
    resp = asyncio.run(info.info(source, state(), b"not a certificate"))
    assert resp.certificates[0].error.endswith("gone.crt: No such file or directory")
    assert resp.certificates[1].error.startswith("not a PEM certificate")
