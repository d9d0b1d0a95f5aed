"""Image archives built in tests: layers from entries, and OCI image layout tars.

Shared by the runtime's integration tests and the end-to-end image load test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

Entry = tuple[str, bytes | None, str | None]   # name, file content (None = dir), symlink target


def make_layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_layer(docker_tar: Path) -> bytes:
    with tarfile.open(docker_tar) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        return tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]


def write_oci_layout(dest: Path, layers: list[bytes], ref: str, gzip_from: int = 1) -> Path:
    """An OCI image layout tar; layers from index ``gzip_from`` on are gzip-compressed."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    layer_descs = []
    for i, layer in enumerate(layers):
        data = gzip.compress(layer, mtime=0) if i >= gzip_from else layer
        kind = "tar+gzip" if i >= gzip_from else "tar"
        layer_descs.append({"mediaType": f"application/vnd.oci.image.layer.v1.{kind}",
                            "digest": blob(data), "size": len(data)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["sh"], "Env": ["PATH=/bin:/usr/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blob(config), "size": len(config)},
        "layers": layer_descs}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": ref}}]}
    with tarfile.open(dest, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                 "index.json": json.dumps(index).encode(),
                 **{f"blobs/sha256/{d[7:]}": data for d, data in blobs.items()}}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest
