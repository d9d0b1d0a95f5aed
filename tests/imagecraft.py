"""Hand-crafted (and hostile) image archives for the image store's tests.

Unlike tests/imagekit.py, nothing here has to be a valid image: the config, the
diff_ids, the descriptors and the member names are whatever the test says, so a test
can put ``sha256:../../x`` wherever a digest goes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: list[bytes], diff_ids: list[Any] | None = None) -> bytes:
    ids = [sha(layer) for layer in layers] if diff_ids is None else diff_ids
    return json.dumps({"architecture": "amd64", "os": "linux",
                       "config": {"Cmd": ["sh"]},
                       "rootfs": {"type": "layers", "diff_ids": ids}}).encode()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_files(layers: list[bytes], ref: str = "evil:1", config: bytes | None = None,
              layer_digests: list[Any] | None = None, config_digest: Any = None,
              manifest_digest: Any = None) -> dict[str, bytes]:
    """The members of an OCI layout; any digest can be overridden with a hostile value."""
    config = config_for(layers) if config is None else config
    blobs = {sha(b): b for b in [config, *layers]}
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
              "digest": d, "size": 1}
             for d in (layer_digests if layer_digests is not None
                       else [sha(layer) for layer in layers])]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest if config_digest is not None else sha(config),
                   "size": len(config)},
        "layers": descs}).encode()
    blobs[sha(manifest)] = manifest
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest if manifest_digest is not None else sha(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": ref}}]}
    return {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": json.dumps(index).encode(),
            **{f"blobs/sha256/{d[7:]}": data for d, data in blobs.items()}}


def docker_files(layers: list[bytes], ref: str = "evil:1", config: bytes | None = None,
                 config_name: str | None = None,
                 layer_names: list[str] | None = None) -> dict[str, bytes]:
    """The members of a docker-save archive (Docker 25+ layout: blobs by digest)."""
    config = config_for(layers) if config is None else config
    names = layer_names or [f"blobs/sha256/{sha(layer)[7:]}" for layer in layers]
    cname = config_name or f"blobs/sha256/{sha(config)[7:]}"
    manifest = [{"Config": cname, "RepoTags": [ref], "Layers": names}]
    files = {"manifest.json": json.dumps(manifest).encode(), cname: config}
    files.update({f"blobs/sha256/{sha(layer)[7:]}": layer for layer in layers})
    return files


def write(dest: Path, files: dict[str, bytes]) -> Path:
    dest.write_bytes(tar_bytes(files))
    return dest
