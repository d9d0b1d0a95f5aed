"""The container's root filesystem: an overlay of image layers plus a private upper dir.

containers.Runtime calls ``mount_rootfs`` during create and ``unmount_rootfs``
during delete. Both are idempotent so a retried create/delete (or one after an
agent crash) converges. Layout inside the container directory::

    rootfs/   overlay mount point (the bundle's root.path)
    upper/    the container's writes
    work/     overlayfs scratch space; must be on the same filesystem as upper/

mount(2)/umount2(2) are called through libc directly: spawning mount(8) twice
per container is a measurable part of start latency (see bench/start_latency.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from pathlib import Path

from agent.runtime.errors import MountError

MNT_DETACH = 2
# The kernel copies mount data into one page; lowerdir beyond that is EINVAL.
_MAX_OPTIONS = 4000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountpoints() -> set[str]:
    """Every mount point visible in this process's mount namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return {_unescape(line.split()[4]) for line in f}


def is_mounted(path: Path) -> bool:
    return str(path) in mountpoints()


def overlay_options(layers: tuple[Path, ...], upper: Path, work: Path) -> str:
    """Overlay mount data; overlayfs wants lowerdir top-most first."""
    lower = ":".join(str(p) for p in reversed(layers))
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if len(opts) > _MAX_OPTIONS:
        raise MountError(f"image has too many layers for one overlay mount ({len(layers)})")
    return opts


def mount_rootfs(container_dir: Path, layers: tuple[Path, ...]) -> Path:
    """Mount the overlay at ``container_dir/rootfs`` unless it already is; return that path."""
    rootfs, upper, work = (container_dir / n for n in ("rootfs", "upper", "work"))
    for d in (rootfs, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    if is_mounted(rootfs):
        return rootfs
    if not layers:
        empty = container_dir / "empty"
        empty.mkdir(exist_ok=True)
        layers = (empty,)
    for layer in layers:
        if not layer.is_dir():
            raise MountError(f"image layer {layer} is missing; reload the image")
    opts = overlay_options(layers, upper, work)
    if _libc.mount(b"overlay", str(rootfs).encode(), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise MountError(f"mount overlay at {rootfs}: {os.strerror(err)}")
    return rootfs


def unmount_rootfs(container_dir: Path) -> None:
    """Unmount the rootfs (lazily if busy). A no-op when it is not mounted."""
    rootfs = container_dir / "rootfs"
    target = str(rootfs).encode()
    while is_mounted(rootfs):
        if _libc.umount2(target, 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EBUSY:
            # A straggler (e.g. a runc exec still exiting) holds it; detach now, free later.
            if _libc.umount2(target, MNT_DETACH) == 0:
                continue
            err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # raced with another unmount
        raise MountError(f"unmount {rootfs}: {os.strerror(err)}")


def remove_rootfs(container_dir: Path) -> None:
    """Unmount, then delete upper/work/rootfs. Refuses to delete through a live mount."""
    unmount_rootfs(container_dir)
    rootfs = container_dir / "rootfs"
    if is_mounted(rootfs):
        raise MountError(f"{rootfs} is still mounted; not removing the container's files")
    for name in ("rootfs", "upper", "work", "empty"):
        shutil.rmtree(container_dir / name, ignore_errors=True)
