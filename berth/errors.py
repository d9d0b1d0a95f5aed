"""Error hierarchy shared by every berth program.

    BerthError
    ├── UserError            bad input from a person: one clear line, exit 1, never retried
    │   ├── ManifestError    names file, document and field path
    │   ├── DigestError      not ``sha256:`` + 64 lowercase hex (berth.digest)
    │   ├── PathEscapeError  a store path resolving outside its store (berth.digest)
    │   └── PkiError         a certificate directory, name or SAN refused (berth.pki)
    ├── TemporaryError       worth retrying after ``delay`` seconds (etcd unavailable, conflict)
    │   ├── ConflictError    an optimistic-concurrency compare failed
    │   └── EtcdUnavailable  etcd did not answer (berth.etcd.errors)
    └── PermanentError       retrying will not help (runtime refused, image missing)
        ├── NotFoundError    the named object does not exist
        ├── EtcdError        etcd refused a request (berth.etcd.errors)
        │   ├── LeaseLost    a lease expired or was revoked (berth.etcd.errors)
        │   └── EtcdPermissionDenied  etcd RBAC refused this client's user (berth.etcd.errors)
        ├── NetnsError       a network namespace cannot be opened or entered (berth.netns)
        └── InvalidTransition  a lifecycle change the table forbids (berth.lifecycle)

Packages add their own below these (see each package's errors.py). How each class
becomes a gRPC status is berth.rpcerrors' table.

Only ``main()`` functions turn these into exit codes.
"""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth raises on purpose."""


class UserError(BerthError):
    """The person asked for something invalid; say so in one line."""


class ManifestError(UserError):
    """A manifest failed validation.

    The message is already in the form ``FILE: DOC: PATH: problem``.
    """


class PkiError(UserError):
    """A PKI directory, identity name, SAN or certificate file was refused (berth.pki)."""


class TemporaryError(BerthError):
    """Retry after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class ConflictError(TemporaryError):
    """A revision compare failed: someone else wrote first."""


class PermanentError(BerthError):
    """Retrying will not help."""


class NotFoundError(PermanentError):
    """The named object does not exist."""
