"""Finding and removing everything a lab left on the machine, beyond its daemons.

``leftovers(name)`` is the single definition of "what of this lab still exists": netns,
the root link, mounts, cgroups, processes and directories. ``down`` removes those kinds
in dependency order (containers before mounts, processes before cgroups, mounts before
directories) and then asks ``leftovers`` whether anything survived. Tests use it too.
Called by ``lab.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from clusterctl.lab import process
from clusterctl.lab.errors import LabError
from clusterctl.lab.state import (
    NETNS_DIR,
    LabState,
    lab_dir,
    load,
    netns_prefix,
    root_link,
    run_dir,
)
from clusterctl.lab.topology import lab_netns

MNT_DETACH = 2
# Programs the lab or its agents run; a process of these whose command line names the
# lab's directories belongs to the lab even when it sits in no lab netns or cgroup.
_LAB_PROGRAMS = {"etcd", "runc", "conmon", "berth-agent", "berth-controller", "nsenter"}


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def lab_mounts(name: str) -> list[str]:
    """Mount points under the lab's dirs and its netns files, deepest first."""
    roots = [str(lab_dir(name)), str(run_dir(name))]
    ns_prefix = str(NETNS_DIR / netns_prefix(name))
    found = {
        point for point in _mount_points()
        if point.startswith(ns_prefix)
        or any(point == root or point.startswith(root + "/") for root in roots)
    }
    return sorted(found, key=lambda p: (-p.count("/"), p))


def unmount_all(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(3):  # stacked mounts on one point need one umount each
        points = lab_mounts(name)
        if not points:
            return
        for point in points:
            if libc.umount2(point.encode(), 0) != 0:
                libc.umount2(point.encode(), MNT_DETACH)


def _cgroup_roots() -> list[Path]:
    roots = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                roots.append(Path(_unescape(fields[4])))
    return roots


def lab_cgroups(name: str) -> list[Path]:
    """Cgroup dirs named berth-<lab>-* in every hierarchy (v1 controllers and v2)."""
    prefix = f"berth-{name}-"
    found: list[Path] = []
    for root in _cgroup_roots():
        for current, dirs, _files in os.walk(root, onerror=lambda _e: None):
            mine = [d for d in dirs if d.startswith(prefix)]
            found.extend(Path(current) / d for d in mine)
            # Don't descend into our own cgroups (their children go with them) nor too deep.
            depth = len(Path(current).relative_to(root).parts)
            dirs[:] = [] if depth >= 6 else [d for d in dirs if d not in mine]
    return sorted(found)


def _cgroup_tree(top: Path) -> Iterator[Path]:
    """``top`` and its descendants, deepest first."""
    for current, _dirs, _files in os.walk(top, topdown=False):
        yield Path(current)


def _cgroup_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    for group in _cgroup_tree(top):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


async def remove_cgroups(name: str) -> None:
    for _ in range(20):
        groups = lab_cgroups(name)
        if not groups:
            return
        await process.kill_all(set().union(*(_cgroup_pids(g) for g in groups)))
        for group in groups:
            for sub in _cgroup_tree(group):
                with contextlib.suppress(OSError):
                    sub.rmdir()
        await asyncio.sleep(0.1)


def _netns_inodes(name: str) -> set[tuple[int, int]]:
    inodes = set()
    for ns in lab_netns(name):
        with contextlib.suppress(OSError):
            st = os.stat(NETNS_DIR / ns)
            inodes.add((st.st_dev, st.st_ino))
    return inodes


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def lab_processes(name: str) -> dict[int, list[str]]:
    """Processes inside a lab netns or cgroup, recorded by the lab, or lab programs
    whose command line names the lab's directories.

    Every process inside a lab netns counts, whoever started it (an operator's
    ``nsenter ... sh``, say): the lab created those namespaces and ``down`` deletes
    them, so nothing may keep one alive, and ``down`` kills such processes too.
    """
    found: dict[int, list[str]] = {}
    inodes = _netns_inodes(name)
    dirs = (f"{lab_dir(name)}/", f"{run_dir(name)}/")
    in_cgroups = set().union(*(_cgroup_pids(g) for g in lab_cgroups(name)))
    state = load_quietly(name)
    recorded = {p.pid: p.argv for p in state.processes.values()} if state else {}
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        cmd = process.cmdline(pid)
        if cmd is None:
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) in inodes:
                found[pid] = cmd
        if pid in in_cgroups or (pid in recorded and process.matches(cmd, recorded[pid])):
            found[pid] = cmd
        elif any(os.path.basename(c) in _LAB_PROGRAMS for c in cmd[:2]) and any(
            d in arg or arg == d.rstrip("/") for arg in cmd for d in dirs
        ):
            found[pid] = cmd
    return found


def load_quietly(name: str) -> LabState | None:
    with contextlib.suppress(LabError):
        return load(name)
    return None


def conmon_pids(name: str) -> list[int]:
    """conmon processes whose pid files sit in the lab's host state dirs.

    A pid in such a file may since have been reused, possibly by another conmon
    (Podman's, say): a process counts only while its argv names that container
    dir (``-b``) or that pid file (``-P``), both of which lie inside this lab.
    """
    pids = []
    for pidfile in (lab_dir(name) / "hosts").glob("**/*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            cmd = process.cmdline(pid)
            if (
                cmd
                and os.path.basename(cmd[0]) == "conmon"
                and (str(pidfile) in cmd or str(pidfile.parent) in cmd)
            ):
                pids.append(pid)
    return pids


async def delete_containers(name: str) -> None:
    """``runc delete --force`` every container in each host's runtime root."""
    runc = shutil.which("runc")
    if runc is None:
        return
    for root in sorted(run_dir(name).glob("*/runc")):
        listing = await _run(runc, "--root", str(root), "list", "-q")
        for container in listing.split():
            await _run(runc, "--root", str(root), "delete", "--force", container)


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    return out.decode(errors="replace")


def remove_dirs(name: str) -> None:
    if lab_mounts(name):
        # rmtree would delete through a surviving bind mount (a volume's source, say);
        # leave the dirs for leftovers() to report instead.
        return
    for path in (run_dir(name), lab_dir(name)):
        shutil.rmtree(path, ignore_errors=True)


def leftovers(name: str) -> list[str]:
    """Everything of lab ``name`` still on this machine, one line each; [] when gone."""
    found = [f"netns {ns}" for ns in lab_netns(name)]
    if os.path.exists(f"/sys/class/net/{root_link(name)}"):
        found.append(f"link {root_link(name)}")
    found += [f"mount {point}" for point in lab_mounts(name)]
    found += [f"cgroup {group}" for group in lab_cgroups(name)]
    found += [f"process {pid} ({' '.join(cmd)[:120]})" for pid, cmd in lab_processes(name).items()]
    found += [f"dir {path}" for path in (lab_dir(name), run_dir(name)) if path.exists()]
    return found
