"""Errors raised by the embedded DNS resolver (agent/dns/).

The agent's reconcile loop calls ``DnsServer.attach`` and sorts failures by
the berth base class::

    berth.errors.BerthError
    ├── UserError
    │   └── InvalidRecord       a name or address that cannot go into the table
    ├── TemporaryError
    │   └── ResolverBusy        127.0.0.11:53 is taken in that netns; retry
    └── PermanentError
        └── NetnsError          the container's netns cannot be opened or entered
                                (defined in berth.netns, shared with the drivers)
"""

from __future__ import annotations

from berth.errors import TemporaryError, UserError
from berth.netns import NetnsError

__all__ = ["InvalidRecord", "NetnsError", "ResolverBusy"]


class InvalidRecord(UserError, ValueError):
    """A DNS name or IPv4 address the records table refuses."""


class ResolverBusy(TemporaryError):
    """Something already listens on 127.0.0.11:53 inside the container."""

