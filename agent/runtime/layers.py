"""Unpack one image layer (a tar diff, maybe gzip'd) into a directory overlayfs can use.

Called by images.ImageStore.load for each layer it does not have yet. Design notes:

- The target directory is named after the sha256 of the *uncompressed* tar (the
  config's diff_id), which we verify while streaming; a mismatch aborts.
- Unpacking goes into a temporary sibling that is renamed into place at the end,
  so a crash never leaves a half layer that a later load would trust.
- OCI/AUFS whiteouts become overlayfs ones: ``.wh.NAME`` -> char device 0/0 at
  NAME, ``.wh..wh..opq`` -> xattr trusted.overlay.opaque=y on the directory.
- Nothing may be written outside the layer directory: names with ``..`` are
  rejected, and no entry may be created *through* a symlink (a symlink itself
  may point anywhere; it is only ever resolved inside the container's root).
- setuid/setgid bits and file capabilities are kept, as Docker keeps them: the
  store is root-only (0700 on the path, see images.py), so no host user can run
  them; inside a container they are what the image asked for.
- Device nodes are refused (Docker's builders never produce them, and a block
  device in the store would be a door to the host's disks). The one exception is
  the char device 0/0, overlayfs's own whiteout.
- ``trusted.*`` xattrs are refused except ``trusted.overlay.opaque``: the others
  steer overlayfs (redirect, origin, metacopy) and are not an image's business.
- Every error is an ImageFormatError with one line; the uncompressed size of a
  layer is bounded (berth.imagelimits.MAX_LAYER_BYTES) so a gzip bomb stops.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, cast

from agent.runtime.errors import ImageFormatError
from berth.digest import Digest
from berth.imagelimits import MAX_LAYER_BYTES

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


_MAX_ID = (1 << 32) - 2   # uid/gid 2**32-1 is "no id" to the kernel


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it, up to a bound."""

    def __init__(self, raw: IO[bytes], limit: int | None = None) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self._limit = limit

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha.update(data)
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise ImageFormatError(f"layer is larger than {self._limit} bytes uncompressed")
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _open_diff(blob: IO[bytes]) -> IO[bytes]:
    head = blob.read(4)
    rest = _Prefixed(head, blob)
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], gzip.GzipFile(fileobj=cast(IO[bytes], rest), mode="rb"))
    if head == _ZSTD_MAGIC:
        raise ImageFormatError("zstd-compressed layers are not supported")
    return cast(IO[bytes], rest)


class _Prefixed:
    """Give back bytes already read for sniffing the compression, then the rest."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            data += self._raw.read(size - len(data))
        return data


def safe_name(name: str) -> str:
    """Normalise a member name to a relative path; reject traversal."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ImageFormatError(f"layer entry {name!r} escapes the layer directory")
    return "/".join(parts)


class _Unpacker:
    """Writes tar members under ``root``, refusing to follow symlinks on the way."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs_ok: set[str] = {""}
        self._dir_times: list[tuple[Path, int]] = []

    def _parent(self, rel: str) -> Path:
        """Create missing parent dirs of ``rel``; refuse if one is not a real directory."""
        parent = rel.rpartition("/")[0]
        if parent not in self._dirs_ok:
            current = ""
            for part in parent.split("/"):
                current = f"{current}/{part}" if current else part
                if current in self._dirs_ok:
                    continue
                path = self.root / current
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    os.mkdir(path, 0o755)
                else:
                    if not stat.S_ISDIR(st.st_mode):
                        raise ImageFormatError(f"layer writes through non-directory {current!r}")
                self._dirs_ok.add(current)
        return self.root / rel

    def _clear(self, path: Path, keep_dir: bool = False) -> None:
        if not keep_dir:
            # A cached "real directory" may be replaced (e.g. by a symlink) from here on.
            rel = str(path.relative_to(self.root))
            self._dirs_ok = {d for d in self._dirs_ok if d != rel and not d.startswith(rel + "/")}
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(path)
        else:
            os.unlink(path)

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = safe_name(member.name)
        if not rel:
            return  # the layer root itself ("./")
        base = rel.rpartition("/")[2]
        if base == OPAQUE_MARKER:
            target = self._parent(rel).parent
            os.setxattr(target, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX):
            hidden = base[len(WHITEOUT_PREFIX):]
            if hidden in ("", ".", "..") or WHITEOUT_PREFIX + hidden != base:
                # ".wh..." would name the parent of the layer directory itself.
                raise ImageFormatError(f"layer entry {member.name!r} is not a valid whiteout")
            path = self._parent(rel).with_name(hidden)
            self._clear(path)
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            return
        path = self._parent(rel)
        self._clear(path, keep_dir=member.isdir())
        self._create(tar, member, path)
        self._metadata(member, path)

    def _create(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        if member.isdir():
            if not path.is_dir():
                os.mkdir(path, 0o755)
            self._dirs_ok.add(str(path.relative_to(self.root)))
        elif member.isreg():
            src = tar.extractfile(member)
            assert src is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            target = self._parent(safe_name(member.linkname))
            if os.path.islink(target.parent) or not os.path.lexists(target):
                raise ImageFormatError(f"bad hardlink {member.name!r} -> {member.linkname!r}")
            os.link(target, path, follow_symlinks=False)
        elif member.ischr() and (member.devmajor, member.devminor) == (0, 0):
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))  # an overlay whiteout
        elif member.ischr() or member.isblk():
            raise ImageFormatError(f"layer entry {member.name!r} is a device node; "
                                   "image layers may not contain devices")
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise ImageFormatError(f"unsupported tar entry type for {member.name!r}")

    def _metadata(self, member: tarfile.TarInfo, path: Path) -> None:
        if member.islnk():
            return  # a hard link shares the target's inode and metadata
        if not (0 <= member.uid <= _MAX_ID and 0 <= member.gid <= _MAX_ID):
            raise ImageFormatError(f"layer entry {member.name!r} has an invalid owner")
        os.lchown(path, member.uid, member.gid)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):]
                raw = value.encode("utf-8", "surrogateescape")
                if name.startswith("trusted.") and (name, raw) != (OPAQUE_XATTR, b"y"):
                    raise ImageFormatError(
                        f"layer entry {member.name!r} sets xattr {name!r}, which images may not")
                os.setxattr(path, name, raw, follow_symlinks=False)
        if member.isdir():
            self._dir_times.append((path, int(member.mtime)))
        else:
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def finish(self) -> None:
        # Directory mtimes last: creating children would bump them again.
        for path, mtime in reversed(self._dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)


_UNPACK_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, OverflowError, ValueError)


def unpack_layer(blob: IO[bytes], dest: Path, diff_id: Digest,
                 blob_digest: Digest | None = None, limit: int = MAX_LAYER_BYTES) -> None:
    """Unpack ``blob`` into the empty directory ``dest``, verifying its digests.

    ``diff_id`` is checked against the uncompressed tar, ``blob_digest`` (when the
    archive names the blob by digest) against the bytes as stored. The caller
    (layerstore.LayerStore) owns ``dest`` and removes it on failure.
    """
    raw = _HashingReader(blob)
    try:
        reader = _HashingReader(_open_diff(cast(IO[bytes], raw)), limit)
        unpacker = _Unpacker(dest)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                unpacker.add(tar, member)
        reader.drain()
        raw.drain()
        unpacker.finish()
    except ImageFormatError as exc:
        raise ImageFormatError(f"layer {diff_id}: {exc}") from exc
    except _UNPACK_ERRORS as exc:
        raise ImageFormatError(f"layer {diff_id}: {exc}") from exc
    if reader.sha.hexdigest() != diff_id.hex:
        raise ImageFormatError(f"layer content does not match diff_id {diff_id}")
    if blob_digest is not None and raw.sha.hexdigest() != blob_digest.hex:
        raise ImageFormatError(f"layer blob does not match its digest {blob_digest}")
