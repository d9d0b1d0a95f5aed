"""controller.images: which references an archive names (both tar formats), and that
storing one never stalls the event loop (hashing, writes and the tar scan run in threads)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.errors import UserError
from controller.images import ImageStore, archive_refs, normalise_ref
from protos import common_pb2


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


class _Etcd:
    """No Ready nodes; records the ImageRecord transaction."""

    def __init__(self) -> None:
        self.ops: list[Any] = []

    async def get_prefix(self, prefix: str) -> Any:
        return SimpleNamespace(items=[])

    async def transaction(self, compare: Any, success: Any) -> tuple[bool, list[None]]:
        self.ops += success
        return True, []


async def test_storing_an_archive_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """Hashing each chunk and scanning the tar go through the store's offload seam (a
    worker thread in production), never straight onto the event loop."""
    archive = _tar(tmp_path / "src.tar", {"manifest.json": [{"RepoTags": ["app:1"]}]}).read_bytes()
    offloaded: list[str] = []

    async def offload(fn: Callable[..., Any], *args: Any) -> Any:
        offloaded.append(getattr(fn, "__name__", repr(fn)))
        return await asyncio.to_thread(fn, *args)

    etcd = _Etcd()
    store = ImageStore(etcd, tmp_path / "state", offload=offload)  # type: ignore[arg-type]

    async def frames() -> AsyncIterator[common_pb2.ImageChunk]:
        yield common_pb2.ImageChunk(filename="app.tar")
        half = len(archive) // 2
        for part in (archive[:half], archive[half:]):
            yield common_pb2.ImageChunk(data=part)

    refs, digest = await store.load(frames())
    assert str(digest) == f"sha256:{hashlib.sha256(archive).hexdigest()}"
    assert store.path(digest).read_bytes() == archive
    assert refs == ["app:1"] and [op.key for op in etcd.ops] == ["/berth/images/app:1"]
    # Both chunks hashed-and-written, and the one tar scan, each in the offload.
    assert offloaded.count("_append") == 2 and offloaded.count("archive_refs") == 1


@pytest.mark.parametrize(
    "ref",
    ["sha256:../secret", "sha256:../../secret", "sha256:" + "/tmp/../".ljust(64, "/"),
     "sha256:" + "A" * 64],
    ids=["parent", "grandparent", "absolute", "upper-case"],
)
async def test_finding_2_image_pull_ref_cannot_leave_the_store(tmp_path: Path, ref: str) -> None:
    """ImagePull(ref="sha256:../../x") used to return any *.tar on the controller host."""
    for planted in (tmp_path / "secret.tar", tmp_path / "state" / "secret.tar"):
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_bytes(b"host secret")
    (tmp_path / "state" / "images").mkdir()
    store = ImageStore(_Etcd(), tmp_path / "state")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^image pull: ref: invalid digest") as info:
        await store.find(ref)
    assert "\n" not in str(info.value)


def test_archive_json_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.tar"
    with tarfile.open(path, "w") as tar:
        body = b" " * (4 << 20) + b"[]"
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(UserError, match=r"manifest\.json is 4194306 bytes; the limit is 4194304"):
        archive_refs(path)


async def test_archive_stream_is_bounded_and_leaves_nothing(tmp_path: Path) -> None:
    store = ImageStore(_Etcd(), tmp_path / "state", max_archive=10)  # type: ignore[arg-type]

    async def frames() -> AsyncIterator[common_pb2.ImageChunk]:
        yield common_pb2.ImageChunk(filename="big.tar")
        for _ in range(3):
            yield common_pb2.ImageChunk(data=b"x" * 6)

    with pytest.raises(UserError, match="larger than the limit of 10 bytes"):
        await store.load(frames())
    assert list((tmp_path / "state" / "images").iterdir()) == []
    assert (tmp_path / "state" / "images").stat().st_mode & 0o777 == 0o700


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["manifest.json", "index.json", "other.json", "../manifest.json"]),
       st.one_of(st.binary(max_size=200), st.recursive(
           st.none() | st.booleans() | st.integers() | st.text(max_size=20),
           lambda inner: st.lists(inner, max_size=4)
           | st.dictionaries(st.sampled_from(["RepoTags", "manifests", "annotations",
                                              "org.opencontainers.image.ref.name"]),
                             inner, max_size=3),
           max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_archive_refs_of_any_tar_is_a_list_or_one_user_error(name: str, body: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        try:
            refs = archive_refs(path)
        except UserError as exc:
            assert "\n" not in str(exc) and "<class" not in str(exc)
        else:
            assert all(isinstance(r, str) for r in refs)
