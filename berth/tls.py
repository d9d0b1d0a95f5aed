"""mTLS for berth's own gRPC hops: a daemon's identity, its credentials, the revocation list.

Both daemons build one ``TlsSettings`` from Docker's flags (berth.daemonflags:
``--tlsverify --tlscacert --tlscert --tlskey``) and use it both ways: to serve
(clients must present a certificate the CA signed) and to dial (the controller to
agents, the agent to the controller). clusterctl builds one from its context.
berth.authz reads the peer's certificate from the call and asks ``Revocations``
whether its serial was revoked; the list is ``revoked.json`` beside the CA file
(``clusterctl pki revoke`` writes it there), re-read whenever the file changes, so a
revocation needs no restart.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from berth import pki
from berth.errors import PkiError, UserError

log = logging.getLogger(__name__)
# A grpc channel option: the name the server's certificate must carry, whatever address
# is dialled. The controller pins ``node-<name>`` so only that node's agent can answer.
TARGET_NAME = "grpc.ssl_target_name_override"


@dataclass(frozen=True)
class TlsSettings:
    """A CA to trust, and the certificate and key to show. Files are read when used."""

    ca: str
    cert: str
    key: str

    def _read(self, flag: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"{flag} {path}: {exc.strerror or exc}") from exc

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve TLS and require a client certificate signed by our CA."""
        return grpc.ssl_server_credentials(
            [(self._read("--tlskey", self.key), self._read("--tlscert", self.cert))],
            root_certificates=self._read("--tlscacert", self.ca),
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self._read("--tlscacert", self.ca),
            private_key=self._read("--tlskey", self.key),
            certificate_chain=self._read("--tlscert", self.cert),
        )

    def common_name(self) -> str:
        """The CN of our own certificate (the role we act as)."""
        try:
            cert = x509.load_pem_x509_certificate(self._read("--tlscert", self.cert))
        except ValueError as exc:
            raise UserError(f"--tlscert {self.cert}: not a PEM certificate") from exc
        return pki.common_name(cert)

    @property
    def revocation_file(self) -> Path:
        return Path(self.ca).parent / pki.REVOKED


def channel(
    address: str, tls: TlsSettings | None, options: list[tuple[str, int]],
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """A channel to ``address``: mTLS with ``tls`` (pinning ``server_name``), else plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    opts: list[tuple[str, int | str]] = list(options)
    if server_name is not None:
        opts.append((TARGET_NAME, server_name))
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=opts)


class Revocations:
    """The serials in revoked.json, re-read when the file changes.

    A list that cannot be read when the daemon starts stops it (``load``); one that
    turns bad later keeps the last good list and logs, so a half-copied file never
    lets a revoked certificate back in nor locks every client out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._pem_serials: OrderedDict[bytes, int] = OrderedDict()

    def load(self) -> None:
        self._serials = pki.revoked_serials(self.path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            self._serials = pki.revoked_serials(self.path)
        except PkiError as exc:
            log.error("keeping the previous revocation list: %s", exc)
        self._stamp = stamp

    def serial_of(self, pem: bytes) -> int:
        serial = self._pem_serials.get(pem)
        if serial is None:
            serial = x509.load_pem_x509_certificate(pem).serial_number
            self._pem_serials[pem] = serial
            if len(self._pem_serials) > 256:
                self._pem_serials.popitem(last=False)
        return serial

    def is_revoked(self, pem: bytes) -> bool:
        self._refresh()
        return bool(self._serials) and self.serial_of(pem) in self._serials
