"""The unpacked layers of one node's image store, and the record of which ones are verified.

Used by images.ImageStore. Layout under the image store root::

    layers/<hex of diff_id>/     one unpacked layer (overlayfs lowerdir)
    layers/.tmp-<hex>-<rand>/    an unpack in progress (never trusted, never pruned)
    layers.json                  ["<hex>", ...]: the layers whose unpack was verified

Design notes:

- A layer is present only when ``layers.json`` lists it *and* its directory exists. A
  directory alone proves nothing: it may be left by a crash, by an older berth that did
  not keep the record, or planted. Such a directory is moved aside and unpacked again.
- The record is rewritten atomically (temp file + rename) under the store's flock, in
  the same critical section as the rename of the verified unpack into place, so two
  loads of the same layer at once end with one directory and one entry.
- Paths are built from a parsed ``Digest`` only and checked with ``berth.digest.inside``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from agent.runtime.errors import ImageFormatError
from agent.runtime.layers import unpack_layer
from berth.digest import Digest, DigestError, store_path

STORE_MODE = 0o700
Lock = Callable[[], AbstractContextManager[None]]


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it root-only, also when it already existed."""
    path.mkdir(parents=True, exist_ok=True, mode=STORE_MODE)
    os.chmod(path, STORE_MODE)


class LayerStore:
    """Verified layers by diff_id."""

    def __init__(self, root: Path, lock: Lock) -> None:
        self.dir = root / "layers"
        self._index = root / "layers.json"
        self._lock = lock
        ensure_private_dir(self.dir)

    def path(self, diff_id: Digest) -> Path:
        return store_path(self.dir, diff_id)

    def recorded(self) -> set[Digest]:
        try:
            raw = self._index.read_bytes()
        except FileNotFoundError:
            return set()
        try:
            data = json.loads(raw)
            if not isinstance(data, list):
                raise ValueError("not a list")
            return {Digest.from_hex(h, "layers.json") for h in data}
        except (ValueError, DigestError) as exc:
            raise ImageFormatError(f"{self._index}: corrupt layer record: {exc}") from exc

    def _write(self, layers: set[Digest]) -> None:
        tmp = self._index.with_name(f".layers-{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(sorted(d.hex for d in layers)))
        os.replace(tmp, self._index)

    def has(self, diff_id: Digest) -> bool:
        return diff_id in self.recorded() and self.path(diff_id).is_dir()

    def ensure(self, blob: IO[bytes], diff_id: Digest, blob_digest: Digest | None) -> Path:
        """Unpack and record ``diff_id`` unless it is recorded; return its directory."""
        final = self.path(diff_id)
        if self.has(diff_id):
            return final
        tmp = self.dir / f".tmp-{diff_id.hex[:12]}-{uuid.uuid4().hex[:8]}"
        # 0755: this becomes the container's "/" unless the layer says otherwise. Host
        # users cannot reach it anyway: layers/ above it is 0700.
        os.mkdir(tmp, 0o755)
        try:
            unpack_layer(blob, tmp, diff_id, blob_digest)
            with self._lock():
                layers = self.recorded()
                if diff_id in layers and final.is_dir():
                    return final  # another load won the race; ours is discarded below
                if os.path.lexists(final):
                    self._set_aside(final)
                os.rename(tmp, final)
                self._write(layers | {diff_id})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _set_aside(self, path: Path) -> None:
        """Remove an unrecorded entry at a layer's name (a crash leftover, or planted)."""
        aside = self.dir / f".stale-{uuid.uuid4().hex[:8]}"
        os.rename(path, aside)
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink()

    def prune(self, keep: set[Digest], in_use: set[Path]) -> list[Path]:
        """Drop layers not in ``keep`` whose directory no caller holds; return them."""
        removed: list[Path] = []
        held = {p.resolve() for p in in_use}
        with self._lock():
            layers = self.recorded()
            for entry in self.dir.iterdir():
                if entry.name.startswith("."):
                    continue  # unpacks in progress
                try:
                    digest = Digest.from_hex(entry.name)
                except DigestError:
                    digest = None
                if digest is not None and (digest in keep or entry.resolve() in held):
                    continue
                if digest is not None:
                    layers.discard(digest)
                removed.append(entry)
            self._write(layers)
        for path in removed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return removed
