"""berth's PKI: a CA and the certificates of every identity, in one directory.

Called by ``clusterctl pki`` (init, add-node, renew, revoke, list) and by the lab; the
daemons only read what this writes (berth.tls). Layout of a PKI directory::

    ca.crt  ca.key                   the CA (key 0600)
    admin.crt  admin.key             CN "admin": clusterctl, may do everything
    controller.crt  controller.key   CN "controller"
    node-<name>.crt  node-<name>.key CN "node:<name>": that node's agent
    etcd-<name>.crt  etcd-<name>.key CN "etcd:<name>": an etcd member (server and peer)
    revoked.json                     serials refused although the CA signed them
    ca.crl                           the same serials as a CRL signed by the CA, for etcd
                                     (--client-crl-file, --peer-crl-file)

Every certificate has clientAuth; the server identities (controller, node-*, etcd-*)
have serverAuth too and carry the SANs given on the command line plus a DNS name equal
to their file stem (``node-h1``): the controller pins that name when it dials an
agent, so an agent can only ever answer as the node its certificate names.

Design notes: keys are EC P-256 (small, fast, accepted by gRPC and etcd). A key file is
created with O_EXCL and never overwritten: ``renew`` re-signs the existing key, so the
daemons' key paths stay valid. Certificates and revoked.json are written to a temporary
file and renamed. Names are DNS labels, so a name never becomes a path segment other
than its own file.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from berth.errors import PkiError

CA_DAYS = 3650
LEAF_DAYS = 365
MAX_DAYS = 3650
REVOKED = "revoked.json"
CRL = "ca.crl"
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(_LABEL)
_DNS_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
Kind = Literal["admin", "controller", "node", "etcd"]
San = x509.DNSName | x509.IPAddress


@dataclass(frozen=True)
class Identity:
    """Who a certificate speaks for; ``name`` only for nodes and etcd members."""

    kind: Kind
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) != (self.kind in ("admin", "controller")):
            raise PkiError(f"identity {self.kind}: a name goes with node and etcd only")
        if self.name is not None:
            check_name(self.name, self.kind)

    @property
    def cn(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"

    @property
    def stem(self) -> str:
        return self.kind if self.name is None else f"{self.kind}-{self.name}"

    @property
    def server(self) -> bool:
        return self.kind != "admin"

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``admin``, ``controller``, ``node-h1`` / ``node:h1``, ``etcd-e1`` / ``etcd:e1``."""
        if text == "admin":
            return cls("admin")
        if text == "controller":
            return cls("controller")
        for sep in ("-", ":"):
            if text.startswith("node" + sep):
                return cls("node", text[5:])
            if text.startswith("etcd" + sep):
                return cls("etcd", text[5:])
        raise PkiError(f"unknown identity {text!r}: expected admin, controller, "
                       "node-NAME or etcd-NAME")

    @classmethod
    def from_cn(cls, cn: str) -> Identity | None:
        """The identity a peer's CN names, or None for a CN berth does not issue."""
        try:
            return cls.parse(cn) if cn in ("admin", "controller") or ":" in cn else None
        except PkiError:
            return None


def check_name(name: str, what: str = "node") -> str:
    if not _NAME_RE.fullmatch(name):
        raise PkiError(f"invalid {what} name {name!r}: use 1-63 lowercase letters, digits "
                       "and '-' (a DNS label)")
    return name


def parse_san(text: str) -> San:
    """An IP address or a DNS name; anything else is refused in one line."""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _DNS_RE.fullmatch(text.lower()) or text.replace(".", "").isdigit():
        raise PkiError(f"invalid SAN {text!r}: not an IP address or a DNS name")
    return x509.DNSName(text.lower())


def parse_sans(texts: Iterable[str]) -> list[San]:
    return [parse_san(t.strip()) for text in texts for t in text.split(",") if t.strip()]


def check_days(days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise PkiError(f"invalid validity {days} days: use 1 to {MAX_DAYS}")
    return days


# --- files -------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise PkiError(f"{path} exists; a key is never overwritten") from exc
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise PkiError(f"{path}: no such certificate") from exc
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: not a PEM certificate ({exc})") from exc


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise PkiError(f"{path}: no such key") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: not an EC key")
    return key


# --- signing -----------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _builder(cn: str, public: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def _make_ca(directory: Path, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-ca")])
    cert = (_builder("berth-ca", key.public_key(), days)
            .issuer_name(name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(directory / "ca.key", key)
    _write_atomic(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _sign(
    directory: Path, ident: Identity, public: ec.EllipticCurvePublicKey,
    sans: Sequence[San], days: int,
) -> x509.Certificate:
    ca_cert = load_cert(directory / "ca.crt")
    ca_key = _load_key(directory / "ca.key")
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (_builder(ident.cn, public, days)
               .issuer_name(ca_cert.subject)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=True,
                   data_encipherment=False, key_agreement=True, key_cert_sign=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if ident.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        names: list[San] = [x509.DNSName(ident.stem)]
        names += [s for s in sans if s not in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


# --- the verbs ---------------------------------------------------------------------------


def is_pki_dir(directory: Path) -> bool:
    return (directory / "ca.crt").is_file() and (directory / "ca.key").is_file()


def ensure_dir(directory: Path, *, days: int = CA_DAYS) -> bool:
    """Create the directory and its CA; True when the CA was made now.

    An existing non-empty directory is used only when it already holds a berth CA.
    """
    check_days(days)
    if directory.exists() and not directory.is_dir():
        raise PkiError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if is_pki_dir(directory):
            _ensure_revocation_files(directory)
            return False
        raise PkiError(f"{directory}: not empty and not a berth PKI directory (no ca.crt "
                       "and ca.key); choose an empty or new directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_ca(directory, days)
    _ensure_revocation_files(directory)
    return True


def _ensure_revocation_files(directory: Path) -> None:
    """An empty revoked.json and its CRL when missing, so every node gets both files."""
    if not (directory / REVOKED).exists():
        _write_atomic(directory / REVOKED, b'{"revoked": []}\n', 0o644)
        write_crl(directory)
    elif not (directory / CRL).exists():
        write_crl(directory)


def check_can_issue(directory: Path, ident: Identity, sans: Sequence[San] = (),
                    days: int = LEAF_DAYS) -> None:
    """Raise PkiError unless ``issue`` would make ``ident`` (callers that must change
    something else first ask before they do)."""
    check_days(days)
    if not is_pki_dir(directory):
        raise PkiError(f"{directory}: not a berth PKI directory (run clusterctl pki init)")
    if sans and not ident.server:
        raise PkiError(f"{ident.stem}: a client-only identity takes no SANs")
    if exists(directory, ident):
        raise PkiError(f"{ident.stem} exists in {directory}; use renew to re-sign it")


def issue(directory: Path, ident: Identity, sans: Sequence[San] = (),
          days: int = LEAF_DAYS) -> Path:
    """Make a key and a CA-signed certificate for ``ident``; refuse one that exists."""
    check_can_issue(directory, ident, sans, days)
    key_path, crt_path = directory / f"{ident.stem}.key", directory / f"{ident.stem}.crt"
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign(directory, ident, key.public_key(), sans, days)
    _write_key(key_path, key)
    _write_atomic(crt_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return crt_path


def exists(directory: Path, ident: Identity) -> bool:
    return (directory / f"{ident.stem}.crt").exists() or (directory / f"{ident.stem}.key").exists()


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def current_sans(cert: x509.Certificate) -> list[San]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [n for n in ext.value if isinstance(n, x509.DNSName | x509.IPAddress)]


def renew(directory: Path, ident: Identity, *, days: int = LEAF_DAYS,
          sans: Sequence[San] | None = None) -> x509.Certificate:
    """Re-sign ``ident``'s existing key with a fresh validity (and SANs, if given)."""
    check_days(days)
    crt_path = directory / f"{ident.stem}.crt"
    old = load_cert(crt_path)
    if old.serial_number in revoked_serials(directory / REVOKED):
        # A new serial would silently undo the revocation.
        raise PkiError(f"{ident.stem} is revoked; it cannot be renewed")
    key = _load_key(directory / f"{ident.stem}.key")
    if key.public_key().public_numbers() != old.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"{crt_path}: does not match {ident.stem}.key")
    if sans is None:
        sans = [s for s in current_sans(old) if s != x509.DNSName(ident.stem)]
    cert = _sign(directory, ident, key.public_key(), sans, days)
    _write_atomic(crt_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def identities(directory: Path) -> list[Identity]:
    """Every identity with a certificate in ``directory``, sorted by file name."""
    found = []
    for path in sorted(directory.glob("*.crt")):
        if path.name == "ca.crt":
            continue
        try:
            found.append(Identity.parse(path.stem))
        except PkiError:
            continue
    return found


def revoked_identities(directory: Path) -> list[Identity]:
    """Identities whose certificate in ``directory`` is on its revocation list."""
    revoked = revoked_serials(directory / REVOKED)
    return [ident for ident in identities(directory)
            if load_cert(directory / f"{ident.stem}.crt").serial_number in revoked]


def expiring(directory: Path, within_days: int) -> list[Identity]:
    """Identities whose certificate ends within ``within_days`` (revoked ones left out)."""
    limit = _now() + datetime.timedelta(days=within_days)
    revoked = revoked_serials(directory / REVOKED)
    found = []
    for ident in identities(directory):
        cert = load_cert(directory / f"{ident.stem}.crt")
        if cert.not_valid_after_utc <= limit and cert.serial_number not in revoked:
            found.append(ident)
    return found


def revoke(directory: Path, ident: Identity) -> int:
    """Add ``ident``'s certificate serial to revoked.json; return the serial."""
    cert = load_cert(directory / f"{ident.stem}.crt")
    path = directory / REVOKED
    entries = _read_revoked(path)
    if all(int(e["serial"], 16) != cert.serial_number for e in entries):
        entries.append({"serial": format(cert.serial_number, "x"), "cn": ident.cn,
                        "revoked_at": _now().isoformat(timespec="seconds")})
        data = json.dumps({"revoked": entries}, indent=2).encode() + b"\n"
        _write_atomic(path, data, 0o644)
    write_crl(directory)
    return int(cert.serial_number)


def write_crl(directory: Path) -> Path:
    """(Re)write ca.crl from revoked.json, signed by the CA; etcd reads it per connection."""
    ca_cert = load_cert(directory / "ca.crt")
    ca_key = _load_key(directory / "ca.key")
    now = _now()
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=LEAF_DAYS)))
    for serial in sorted(revoked_serials(directory / REVOKED)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    path = directory / CRL
    _write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    return path


def _read_revoked(path: Path) -> list[dict[str, str]]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: not a revocation list ({exc})") from exc
    entries = doc.get("revoked") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("serial"), str)
        and re.fullmatch(r"[0-9a-f]{1,40}", e["serial"]) for e in entries
    ):
        raise PkiError(f'{path}: not a revocation list (expected {{"revoked": '
                       '[{"serial": HEX, ...}]})')
    return entries


def revoked_serials(path: Path) -> frozenset[int]:
    """The serials in a revocation list; an absent file revokes nothing."""
    return frozenset(int(e["serial"], 16) for e in _read_revoked(path))
