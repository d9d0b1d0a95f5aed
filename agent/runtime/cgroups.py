"""Finding and removing a container's cgroup directories in every mounted hierarchy.

runc's cgroupfs driver creates ``<hierarchy>/<cgroupsPath>`` in each v1
controller hierarchy and in the v2 tree (hybrid hosts have both). ``runc
delete`` normally removes them, but not when runc was killed halfway or the
container was never started, so containers.Runtime.delete calls
``remove_cgroup`` for the leftovers, and tests call it for their cgroup parent.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

_RETRIES = 20
_RETRY_DELAY = 0.05


def hierarchies() -> list[Path]:
    """Mount points of every cgroup v1 and v2 hierarchy visible to this process."""
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                found.append(Path(fields[4]))
    return found


def cgroup_dirs(cgroup_path: str) -> list[Path]:
    """Existing directories for ``cgroup_path`` (``/parent/name``) across hierarchies."""
    rel = cgroup_path.strip("/")
    if not rel:
        raise ValueError("refusing to touch the root cgroup")
    return [h / rel for h in hierarchies() if (h / rel).is_dir()]


def _rmdir_tree(path: Path) -> None:
    """rmdir children first; cgroupfs dirs cannot be removed with their files (no unlink)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            _rmdir_tree(child)
    for attempt in range(_RETRIES):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # EBUSY: a process is still leaving the cgroup (the kernel reaps it shortly).
            if exc.errno != errno.EBUSY or attempt == _RETRIES - 1:
                raise
            time.sleep(_RETRY_DELAY)


def remove_cgroup(cgroup_path: str) -> list[Path]:
    """Remove ``cgroup_path`` and everything below it in every hierarchy; return what it removed."""
    removed = cgroup_dirs(cgroup_path)
    for path in removed:
        _rmdir_tree(path)
    return removed
