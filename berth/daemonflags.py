"""Flags both daemons share, spelled the same: etcd and its TLS files, log level, metrics.

controller/config.py and agent/config.py add these to their parsers and keep the
values in their frozen config objects; nothing else reads argparse namespaces.
TLS for the daemons' own gRPC API takes Docker's flags: ``--tlsverify`` (serve mTLS:
require and verify client certificates) with ``--tlscacert --tlscert --tlskey``, which
are also the identity the daemon dials with (berth.tls). Without ``--tlsverify`` the
daemon serves plaintext and logs a warning; the three files without it are refused,
so nobody believes a daemon is closed when it is not.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

from berth.etcd import Etcd3Client
from berth.tls import TlsSettings

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class EtcdSettings:
    """Where etcd is and how to prove who we are to it."""

    endpoint: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def client(self) -> Etcd3Client:
        return Etcd3Client(self.endpoint, ca_cert=self.ca, cert_cert=self.cert,
                           cert_key=self.key)


@dataclass(frozen=True)
class Common:
    etcd: EtcdSettings
    log_level: str
    metrics_listen: str | None     # "" serves no metrics; None: the daemon's default
    tls: TlsSettings | None = None  # None: plaintext (no --tlsverify)


def add_common(parser: argparse.ArgumentParser, *, metrics_default: str | None) -> None:
    """``metrics_default`` None: the daemon derives it (the agent: its underlay address)."""
    parser.add_argument("--etcd", default="127.0.0.1:2379", help="etcd endpoint (HOST:PORT)")
    parser.add_argument("--etcd-ca", default=None, help="CA bundle that signed etcd's cert")
    parser.add_argument("--etcd-cert", default=None, help="client certificate for etcd")
    parser.add_argument("--etcd-key", default=None, help="client key for etcd")
    # None: not given (a daemon's configuration file may set it; berth.daemonconfig).
    parser.add_argument("--log-level", default=None, type=str.upper, choices=LOG_LEVELS,
                        help="log level (default INFO)")
    parser.add_argument("--metrics-listen", default=metrics_default,
                        help="HOST:PORT for Prometheus /metrics; '' to serve none")
    # default None, not False: a configuration file's "tlsverify" clashes only with a given flag.
    parser.add_argument("--tlsverify", action="store_true", default=None,
                        help="serve mTLS: require client certificates signed by --tlscacert")
    parser.add_argument("--tlscacert", default=None, help="CA that signs every berth peer")
    parser.add_argument("--tlscert", default=None, help="this daemon's certificate")
    parser.add_argument("--tlskey", default=None, help="this daemon's key")


def _tls(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> TlsSettings | None:
    files = {"--tlscacert": ns.tlscacert, "--tlscert": ns.tlscert, "--tlskey": ns.tlskey}
    if not ns.tlsverify:
        given = [flag for flag, value in files.items() if value is not None]
        if given:
            parser.error(f"{', '.join(given)} without --tlsverify: add --tlsverify to serve mTLS")
        return None
    missing = [flag for flag, value in files.items() if not value]
    if missing:
        parser.error(f"--tlsverify needs {', '.join(missing)}")
    for flag, value in files.items():
        if not os.path.isfile(value):
            parser.error(f"{flag} {value}: no such file")
    return TlsSettings(ca=ns.tlscacert, cert=ns.tlscert, key=ns.tlskey)


def common(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> Common:
    """The shared part of ``ns``; a bad combination is a usage error (exit 2)."""
    if (ns.etcd_cert is None) != (ns.etcd_key is None):
        parser.error("--etcd-cert and --etcd-key go together")
    return Common(
        etcd=EtcdSettings(ns.etcd, ns.etcd_ca, ns.etcd_cert, ns.etcd_key),
        log_level=logging.getLevelName(logging.getLevelName(ns.log_level or "INFO")),
        metrics_listen=ns.metrics_listen,
        tls=_tls(parser, ns),
    )
