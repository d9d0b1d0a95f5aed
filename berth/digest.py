"""Content digests, parsed strictly, and store paths that cannot leave their store.

Every digest that enters berth (an image config's ``rootfs.diff_ids``, docker-save
``manifest.json`` names, OCI descriptors, ``sha256:`` references, RPC arguments,
``refs.json`` values and file names read back from disk) goes through ``Digest.parse``
once, as go-digest's ``Parse`` does. Only ``sha256:`` followed by exactly 64 lowercase hex
characters is accepted: no other algorithm, no upper case, no whitespace, no trailing
newline. Everything else raises ``DigestError``, a one-line ``UserError`` that callers may
rewrap in their own package's error.

Store paths are then built from the parsed hex only, and ``inside`` resolves the result
and refuses anything that does not lie under the store root (containerd's content store
and ``securejoin`` are the model). Used by the agent's image store (agent/runtime/) and by
the controller's archive store (controller/images.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from berth.errors import UserError

ALGORITHM = "sha256"
_HEX = re.compile(r"[a-f0-9]{64}")
_SHOWN = 80  # a hostile value is shown cut to this many characters, on one line


class DigestError(UserError):
    """A value that is not ``sha256:`` + 64 lowercase hex characters."""


class PathEscapeError(UserError):
    """A store path that resolves outside its store root."""


def shown(value: object) -> str:
    """``repr`` of a hostile value, cut short, so an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


@dataclass(frozen=True, order=True)
class Digest:
    """A validated ``sha256:<hex>`` digest. ``str()`` gives the canonical form."""

    hex: str

    def __post_init__(self) -> None:
        if not isinstance(self.hex, str) or not _HEX.fullmatch(self.hex):
            raise DigestError(f"invalid sha256 hex {shown(self.hex)}")

    def __str__(self) -> str:
        return f"{ALGORITHM}:{self.hex}"

    @classmethod
    def parse(cls, value: object, what: str = "digest") -> Digest:
        """Parse ``sha256:<64 hex>``; raise DigestError naming ``what`` otherwise."""
        if isinstance(value, str):
            algo, sep, hexdigest = value.partition(":")
            if sep and algo == ALGORITHM and _HEX.fullmatch(hexdigest):
                return cls(hexdigest)
        raise DigestError(f"{what}: invalid digest {shown(value)} "
                          f"(expected sha256: and 64 lowercase hex characters)")

    @classmethod
    def from_hex(cls, value: object, what: str = "digest") -> Digest:
        """Parse a bare 64-character hex string (a name on disk or in a tar)."""
        if isinstance(value, str) and _HEX.fullmatch(value):
            return cls(value)
        raise DigestError(f"{what}: invalid sha256 hex {shown(value)}")

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of ``data``."""
        return cls(hashlib.sha256(data).hexdigest())


def inside(root: Path, path: Path) -> Path:
    """Return ``path`` resolved, after checking it lies strictly under ``root`` resolved.

    Symlinks on the way are followed by ``resolve``, so a planted link that leads out of
    the store is refused too, not only ``..`` and absolute names.
    """
    real_root = root.resolve()
    real = path.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise PathEscapeError(f"path {shown(str(path))} is outside the store {str(root)!r}")
    return real


def store_path(root: Path, digest: Digest, suffix: str = "") -> Path:
    """``root/<hex><suffix>``, checked to stay inside ``root``."""
    if "/" in suffix or "\x00" in suffix:
        raise PathEscapeError(f"bad store suffix {shown(suffix)}")
    return inside(root, root / f"{digest.hex}{suffix}")
