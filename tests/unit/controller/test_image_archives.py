"""Which image references an archive names (controller.images), for both tar formats."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from berth.errors import UserError
from controller.images import archive_refs, normalise_ref


def _tar(path: Path, files: dict[str, object]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            body = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"manifest.json": [{"RepoTags": ["busybox:latest", "reg.local/app/busybox:1.36"]}]},
         ["busybox:latest", "reg.local/app/busybox:1.36"]),
        ({"manifest.json": [{"RepoTags": None}]}, []),
        ({"index.json": {"manifests": [
            {"annotations": {"org.opencontainers.image.ref.name": "busybox"}}]}},
         ["busybox:latest"]),
        ({"index.json": {"manifests": [{"annotations": {
            "io.containerd.image.name": "docker.io/library/busybox:1.36",
            "org.opencontainers.image.ref.name": "1.36"}}]}},
         ["docker.io/library/busybox:1.36"]),
    ],
    ids=["docker-save", "docker-save-untagged", "oci-ref-name", "oci-containerd-name"],
)
def test_archive_refs(tmp_path: Path, files: dict[str, object], expected: list[str]) -> None:
    assert archive_refs(_tar(tmp_path / "img.tar", files)) == expected


def test_not_an_image_archive_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"neither manifest\.json nor index\.json"):
        archive_refs(_tar(tmp_path / "x.tar", {"hello.json": {}}))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(UserError, match=r"not a tar archive \(expected docker-save"):
        archive_refs(tmp_path / "junk.tar")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("busybox", "busybox:latest"), ("busybox:1.36", "busybox:1.36"),
     ("localhost:5000/busybox", "localhost:5000/busybox:latest"),
     ("busybox@sha256:abc", "busybox@sha256:abc")],
    ids=["bare", "tagged", "registry-port", "digest"],
)
def test_normalise_ref(ref: str, expected: str) -> None:
    assert normalise_ref(ref) == expected
