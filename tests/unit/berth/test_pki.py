"""berth.pki and ``clusterctl pki``: layout, CNs, SANs, modes, renewal, revocation, and
hostile names and addresses (one line each, nothing written)."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth import pki
from berth.errors import PkiError
from clusterctl.main import main


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def ctl(*args: str) -> Ran:
    """``clusterctl ARGS`` in this process (a subprocess costs seconds per call here)."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["clusterctl", *args]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return Ran(int(code or 0), out.getvalue(), err.getvalue())


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "cluster"
    proc = ctl("pki", "init", str(directory), "--node", "h1=10.0.0.11,h1.example",
               "--node", "h2=10.0.0.12", "--controller-san", "10.0.0.1",
               "--etcd", "e1=10.0.0.1")
    assert proc.returncode == 0, proc.stderr
    return directory


def test_init_makes_the_layout_with_cns_and_private_keys(made: Path) -> None:
    stems = {"ca", "admin", "controller", "node-h1", "node-h2", "etcd-e1"}
    assert {p.name for p in made.iterdir()} == {
        f"{s}.{e}" for s in stems for e in ("crt", "key")} | {"ca.crl", "revoked.json"}
    assert pki.revoked_serials(made / "revoked.json") == frozenset()
    for key in made.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    cns = {p.stem: _cn(_cert(p)) for p in made.glob("*.crt")}
    assert cns == {"ca": "berth-ca", "admin": "admin", "controller": "controller",
                   "node-h1": "node:h1", "node-h2": "node:h2", "etcd-e1": "etcd:e1"}


def test_server_certificates_carry_their_sans_and_both_usages(made: Path) -> None:
    node = _cert(made / "node-h1.crt")
    sans = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.11")]
    assert sans.get_values_for_type(x509.DNSName) == ["node-h1", "h1.example"]
    assert _usages(node) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    admin = _cert(made / "admin.crt")
    assert _usages(admin) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    with pytest.raises(x509.ExtensionNotFound):
        admin.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_every_certificate_is_signed_by_the_ca(made: Path) -> None:
    ca = _cert(made / "ca.crt")
    for path in made.glob("*.crt"):
        _cert(path).verify_directly_issued_by(ca)


def test_init_again_keeps_what_exists_and_adds_what_is_missing(made: Path) -> None:
    before = {p.name: p.read_bytes() for p in made.iterdir()}
    proc = ctl("pki", "init", str(made), "--node", "h1=10.9.9.9", "--node", "h3=10.0.0.13")
    assert proc.returncode == 0, proc.stderr
    assert "node-h1: exists, kept" in proc.stdout
    assert "node-h3: created" in proc.stdout
    for name, data in before.items():
        assert (made / name).read_bytes() == data, name


def test_init_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    proc = ctl("pki", "init", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"Error: {tmp_path}: not empty and not a berth PKI directory "
                                   "(no ca.crt and ca.key); choose an empty or new directory")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(("args", "message"), [
    (["--node", "../x=10.0.0.1"], "invalid node name '../x'"),
    (["--node", "a/b=10.0.0.1"], "invalid node name 'a/b'"),
    (["--node", "..=10.0.0.1"], "invalid node name '..'"),
    (["--node", "H1=10.0.0.1"], "invalid node name 'H1'"),
    (["--node", "h1"], "expected NAME=IP"),
    (["--node", "h1=300.1.1.1"], "invalid SAN '300.1.1.1'"),
    (["--node", "h1=10.0.0.1,,bad name"], "invalid SAN 'bad name'"),
    (["--etcd", "e/1=10.0.0.1"], "invalid node name 'e/1'"),
    (["--controller-san", "-x.example"], "invalid SAN '-x.example'"),
    (["--days", "0"], "invalid validity 0 days"),
], ids=["dotdot-path", "slash", "dotdot", "upper", "no-sans", "bad-ip", "space", "etcd-slash",
        "dns-dash", "days-zero"])
def test_hostile_init_input_is_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    target = tmp_path / "new"
    proc = ctl("pki", "init", str(target), *args)
    assert proc.returncode == 1, proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not target.exists()


def test_add_node_refuses_an_existing_node_and_a_path_name(made: Path) -> None:
    key = (made / "node-h2.key").read_bytes()
    proc = ctl("pki", "add-node", str(made), "h2", "--san", "10.0.0.99")
    assert proc.returncode == 1
    assert "node-h2 exists" in proc.stderr
    assert (made / "node-h2.key").read_bytes() == key
    proc = ctl("pki", "add-node", str(made), "../../etc/x", "--san", "10.0.0.99")
    assert proc.returncode == 1
    assert "invalid node name" in proc.stderr
    proc = ctl("pki", "add-node", str(made), "h9", "--san", "10.0.0.19")
    assert proc.returncode == 0, proc.stderr
    assert _cn(_cert(made / "node-h9.crt")) == "node:h9"


def test_renew_keeps_the_key_and_extends_validity(tmp_path: Path) -> None:
    pki.ensure_dir(tmp_path / "p")
    d = tmp_path / "p"
    pki.issue(d, pki.Identity("node", "h1"), pki.parse_sans(["10.0.0.11"]), days=2)
    key = (d / "node-h1.key").read_bytes()
    old = _cert(d / "node-h1.crt")
    assert pki.expiring(d, 3) == [pki.Identity("node", "h1")]
    proc = ctl("pki", "renew", str(d), "--within", "3")
    assert proc.returncode == 0, proc.stderr
    assert "node-h1: renewed" in proc.stdout
    new = _cert(d / "node-h1.crt")
    assert (d / "node-h1.key").read_bytes() == key
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc - old.not_valid_after_utc > datetime.timedelta(days=300)
    assert pki.current_sans(new) == pki.current_sans(old)
    assert pki.expiring(d, 3) == []


def test_revoke_records_the_serial_and_renew_cannot_undo_it(made: Path) -> None:
    serial = _cert(made / "node-h2.crt").serial_number
    proc = ctl("pki", "revoke", str(made), "h2")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((made / "revoked.json").read_text())
    assert [e["cn"] for e in doc["revoked"]] == ["node:h2"]
    assert pki.revoked_serials(made / "revoked.json") == {serial}
    crl = x509.load_pem_x509_crl((made / "ca.crl").read_bytes())
    assert [r.serial_number for r in crl] == [serial]
    assert crl.is_signature_valid(_cert(made / "ca.crt").public_key())  # type: ignore[arg-type]
    proc = ctl("pki", "renew", str(made), "node-h2")
    assert proc.returncode == 1
    assert "node-h2 is revoked" in proc.stderr
    assert "REVOKED" in ctl("pki", "list", str(made)).stdout


def test_a_corrupt_revocation_list_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    for text in ('{"revoked": [{"serial": "xyz"}]}', "[1]", "{"):
        path.write_text(text)
        with pytest.raises(PkiError, match="not a revocation list"):
            pki.revoked_serials(path)
    assert pki.revoked_serials(tmp_path / "absent.json") == frozenset()


@pytest.mark.parametrize("text", ["admin", "controller", "node-h1", "node:h1", "etcd-e1"])
def test_identity_ids_round_trip(text: str) -> None:
    ident = pki.Identity.parse(text)
    assert pki.Identity.parse(ident.stem) == ident
    assert pki.Identity.from_cn(ident.cn) == ident


@pytest.mark.parametrize("cn", ["", "root", "node:", "node:../x", "admin:x", "node-h1",
                                "controller:x", "node:h1:x"])
def test_unknown_cns_are_no_identity(cn: str) -> None:
    assert pki.Identity.from_cn(cn) is None


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_any_name_is_a_dns_label_or_refused(text: str) -> None:
    try:
        ident = pki.Identity("node", text)
    except PkiError as exc:
        assert "\n" not in str(exc)
        return
    assert "/" not in ident.stem and ".." not in ident.stem
    assert Path(ident.stem).name == ident.stem


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_any_san_is_an_address_a_dns_name_or_refused(text: str) -> None:
    try:
        san = pki.parse_san(text)
    except PkiError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(san, x509.IPAddress | x509.DNSName)


def test_add_node_with_an_unreachable_etcd_writes_nothing(made: Path) -> None:
    before = sorted(p.name for p in made.iterdir())
    proc = ctl("pki", "add-node", str(made), "h7", "--etcd", "127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: --etcd 127.0.0.1:1: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in made.iterdir()) == before


def test_revoke_with_etcd_refuses_an_identity_without_an_etcd_user(made: Path) -> None:
    before = (made / "revoked.json").read_bytes()
    proc = ctl("pki", "revoke", str(made), "controller", "--etcd", "127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: --etcd: only a node has an etcd user of its own, not controller")
    assert (made / "revoked.json").read_bytes() == before
