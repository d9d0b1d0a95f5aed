"""Error hierarchy shared by every berth program.

    BerthError
    ├── UserError            bad input from a person: one clear line, exit 1, never retried
    │   └── ManifestError    names file, document and field path
    ├── TemporaryError       worth retrying after ``delay`` seconds (etcd unavailable, conflict)
    │   └── ConflictError    an optimistic-concurrency compare failed
    └── PermanentError       retrying will not help (runtime refused, image missing)

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
