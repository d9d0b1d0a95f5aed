"""OCI bundle (runtime-spec 1.0.2 config.json) for one container, with Docker's defaults.

containers.Runtime calls ``write_container_files`` and ``build_config`` during
create. Design notes:

- Hardening matches ``docker run`` without flags: the 14 default capabilities
  (bounding/effective/permitted, never ambient), masked and read-only /proc and
  /sys paths, the device cgroup allow-list, and seccomp.default_profile().
- Argument resolution follows Docker's config merge exactly: an entrypoint in the
  spec replaces the image's and drops the image's Cmd; an explicitly *empty*
  entrypoint clears the image's but keeps its Cmd.
- /etc/hosts, /etc/hostname and /etc/resolv.conf are files in the container dir,
  bind-mounted. Rewrite them IN PLACE (``rewrite_file``), never by rename: a
  bind mount pins the inode, so a renamed-over file would be invisible inside.
- The network namespace follows the container's network mode (netmode.Sandbox): a new
  one, none at all (``host``: the namespace runc runs in), or the ``path`` of another
  container's. The UTS namespace is always the container's own; only its hostname varies.
- cgroupsPath is absolute (``/<parent>/<name>``): runc's cgroupfs driver reads a
  relative path as relative to runc's own cgroup, which differs per caller.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.runtime.errors import SpecError
from agent.runtime.images import Image
from agent.runtime.netmode import Sandbox
from agent.runtime.seccomp import default_profile
from berth.records import ContainerSpec

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPS: tuple[str, ...] = tuple(f"CAP_{c}" for c in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
))
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)
_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
DEFAULT_MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc", "options": _NOSUID_NOEXEC_NODEV},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": _NOSUID_NOEXEC_NODEV},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
)


def _dev(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


# runc's and Docker's allow-list: deny everything, then mknod of any node plus
# the usual character devices (None = wildcard).
DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    _dev("c", None, None, "m"), _dev("b", None, None, "m"),
    _dev("c", 1, 3), _dev("c", 1, 5), _dev("c", 1, 7),        # null zero full
    _dev("c", 1, 8), _dev("c", 1, 9),                          # random urandom
    _dev("c", 5, 0), _dev("c", 5, 1), _dev("c", 5, 2),        # tty console ptmx
    _dev("c", 136, None), _dev("c", 10, 200),                  # pts/* net/tun
)


@dataclass(frozen=True)
class ContainerFiles:
    """Per-container /etc files the agent may rewrite while the container runs."""

    hosts: Path
    hostname: Path
    resolv_conf: Path


def rewrite_file(path: Path, text: str) -> None:
    """Replace a bind-mounted file's content in place (keeps the inode the mount pins)."""
    with open(path, "r+" if path.exists() else "w", encoding="utf-8") as f:
        f.write(text)
        f.truncate()


def write_container_files(container_dir: Path, hostname: str) -> ContainerFiles:
    """Write default hosts/hostname/resolv.conf unless they exist already."""
    files = ContainerFiles(container_dir / "hosts", container_dir / "hostname",
                           container_dir / "resolv.conf")
    defaults = {
        files.hosts: f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                     f"127.0.1.1\t{hostname}\n",
        files.hostname: f"{hostname}\n",
        files.resolv_conf: "# berth: rewritten by the agent when networks are attached\n",
    }
    for path, text in defaults.items():
        if not path.exists():
            rewrite_file(path, text)
    return files


def resolve_args(spec: ContainerSpec, image: Image) -> list[str]:
    """Docker's entrypoint/cmd merge; raises SpecError if nothing is left to run."""
    if spec.entrypoint:
        args = [*spec.entrypoint, *(spec.command or ())]
    else:
        entrypoint = image.entrypoint if spec.entrypoint is None else ()
        cmd = spec.command if spec.command else image.cmd
        args = [*(entrypoint or ()), *(cmd or ())]
    if not args:
        raise SpecError(f"{spec.name}: no command specified (image {image.ref} has none)")
    return args


def merge_env(image_env: Sequence[str], spec_env: Mapping[str, str], hostname: str) -> list[str]:
    """Image env, then HOSTNAME, then spec env; later keys win, first position is kept."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(spec_env)
    return [f"{k}={v}" for k, v in merged.items()]


def _read_db(rootfs: Path, name: str) -> list[list[str]]:
    """Rows of the container's /etc/passwd or /etc/group, without following symlinks out."""
    etc = rootfs / "etc"
    path = etc / name
    if etc.is_symlink() or path.is_symlink() or not path.is_file():
        return []
    return [line.split(":") for line in path.read_text(errors="replace").splitlines()
            if line and not line.startswith("#")]


def resolve_user(user: str, rootfs: Path) -> tuple[int, int]:
    """``uid[:gid]`` or ``name[:group]`` as Docker resolves them against the image's files."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "passwd")
    if name.isdigit():
        uid = int(name)
        gid = next((int(r[3]) for r in passwd if len(r) > 3 and r[2] == name), 0)
    else:
        row = next((r for r in passwd if len(r) > 3 and r[0] == name), None)
        if row is None:
            raise SpecError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(row[2]), int(row[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((r for r in _read_db(rootfs, "group") if len(r) > 2 and r[0] == group),
                        None)
            if grow is None:
                raise SpecError(f"unable to find group {group}: no matching entries in group file")
            gid = int(grow[2])
    return uid, gid


def _ensure_cwd(rootfs: Path, cwd: str) -> None:
    # Docker creates a missing WORKDIR; only do it when no symlink could redirect us.
    target = Path(os.path.realpath(rootfs / cwd.lstrip("/")))
    if (target == rootfs or rootfs in target.parents) and not target.exists():
        target.mkdir(parents=True)


def namespaces(sandbox: Sandbox) -> list[dict[str, str]]:
    """The OCI namespaces: always new pid/mount/uts/ipc; the network one per the sandbox."""
    found = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]
    if sandbox.netns == "new":
        found.append({"type": "network"})
    elif sandbox.netns == "path":
        found.append({"type": "network", "path": sandbox.netns_path})
    return found


def build_config(spec: ContainerSpec, image: Image, rootfs: Path, files: ContainerFiles,
                 cgroup_parent: str, sandbox: Sandbox | None = None) -> dict[str, Any]:
    """The complete OCI config for ``spec`` running ``image`` on the mounted ``rootfs``.

    ``files`` are bind-mounted as /etc/hosts, /etc/hostname and /etc/resolv.conf (a
    joiner's are its target's); ``sandbox`` defaults to a new netns named after ``spec``.
    """
    sandbox = sandbox or Sandbox("new", spec.name)
    cwd = posixpath.normpath(spec.workdir or image.workdir or "/")
    if not cwd.startswith("/"):
        raise SpecError(f"{spec.name}: working directory {cwd!r} is not absolute")
    _ensure_cwd(rootfs, cwd)
    uid, gid = resolve_user(image.user, rootfs)
    caps = list(DEFAULT_CAPS)
    binds = [
        {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rprivate"]}
        for dest, src in (("/etc/hosts", files.hosts), ("/etc/hostname", files.hostname),
                          ("/etc/resolv.conf", files.resolv_conf))
    ]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": resolve_args(spec, image),
            "env": merge_env(image.env, spec.env, sandbox.hostname),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": sandbox.hostname,
        "mounts": [*DEFAULT_MOUNTS, *binds],
        "linux": {
            "cgroupsPath": "/" + "/".join(p for p in (cgroup_parent.strip("/"), spec.name) if p),
            "resources": {"devices": list(DEVICE_RULES)},
            "namespaces": namespaces(sandbox),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": default_profile(),
        },
    }


def write_bundle(bundle_dir: Path, config: Mapping[str, Any]) -> Path:
    """Write ``bundle_dir/config.json`` atomically; return its path."""
    path = bundle_dir / "config.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=1))
    os.replace(tmp, path)
    return path
