"""Flags both daemons share, spelled the same: etcd and its TLS files, log level, metrics.

controller/config.py and agent/config.py add these to their parsers and keep the
values in their frozen config objects; nothing else reads argparse namespaces. The
deployment issue adds TLS for the daemons' own APIs next to these.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from berth.etcd import Etcd3Client

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


def common(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> Common:
    """The shared part of ``ns``; a bad combination is a usage error (exit 2)."""
    if (ns.etcd_cert is None) != (ns.etcd_key is None):
        parser.error("--etcd-cert and --etcd-key go together")
    return Common(
        etcd=EtcdSettings(ns.etcd, ns.etcd_ca, ns.etcd_cert, ns.etcd_key),
        log_level=logging.getLevelName(logging.getLevelName(ns.log_level or "INFO")),
        metrics_listen=ns.metrics_listen,
    )
