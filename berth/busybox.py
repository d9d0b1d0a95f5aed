"""Build a tiny busybox image as a docker-save tar, from the host's static busybox.

The lab (``clusterctl lab up``) and the runtime's tests call
``build_busybox_image`` so that every node has an image without a registry.
The source binary is Debian's ``busybox-static`` (/bin/busybox); every applet it
lists becomes a symlink to /bin/busybox. Every tar entry has a fixed owner and
mtime, so the layer digest and the image id are stable across builds and hosts
with the same busybox.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from pathlib import Path

from berth.errors import PermanentError

BUSYBOX = Path("/bin/busybox")
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z: any constant keeps digests stable
CREATED = "2000-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_DIRS: dict[str, int] = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o755,
    "root": 0o700, "run": 0o755, "sbin": 0o755, "sys": 0o755, "tmp": 0o1777,
    "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "var": 0o755,
    "var/tmp": 0o1777, "var/run": 0o755, "var/log": 0o755,
}
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
_GROUP = "root:x:0:\nnobody:x:65534:\n"

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run(
            [str(busybox), "--list-full"], check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PermanentError(f"cannot list applets of {busybox}: {exc}") from exc
    # "linuxrc" has no directory part; it is an initrd hook, useless in a container.
    return sorted(p for p in out.split() if "/" in p and p != "bin/busybox")


def _layer_bytes(busybox: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode in sorted(_DIRS.items()):
            tar.addfile(_info(name, tarfile.DIRTYPE, mode))
        data = busybox.read_bytes()
        info = _info("bin/busybox", tarfile.REGTYPE, 0o755)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for path in _applets(busybox):
            link = _info(path, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        for name, text in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            raw = text.encode()
            info = _info(name, tarfile.REGTYPE, 0o644)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _info(name, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_busybox_image(dest: Path, ref: str = "busybox:latest", *,
                        busybox: Path = BUSYBOX) -> Path:
    """Write a docker-save tar of a busybox image tagged ``ref`` to ``dest``; return ``dest``.

    ``dest`` may be a directory, in which case the file is ``dest/busybox.tar``.
    """
    if dest.is_dir():
        dest = dest / "busybox.tar"
    layer = _layer_bytes(busybox)
    layer_hex = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": _GOARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [DEFAULT_PATH], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_hex}"]},
        "history": [{"created": CREATED, "created_by": "berth.busybox"}],
    }
    config_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_raw).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_hex}/layer.tar"]}]
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_info(layer_hex, tarfile.DIRTYPE, 0o755))
        _add_bytes(tar, f"{layer_hex}/layer.tar", layer)
        _add_bytes(tar, config_name, config_raw)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, dest)
    return dest
