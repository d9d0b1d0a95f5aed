"""Integration tests of the image store: real tars, overlayfs whiteouts, runc on top."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.imagestream import load_stream
from agent.runtime import cgroups
from agent.runtime.containers import Runtime
from agent.runtime.errors import ImageFormatError
from agent.runtime.images import ImageStore
from berth.busybox import build_busybox_image
from berth.records import ContainerSpec
from protos import common_pb2
from tests.imagekit import Entry, busybox_layer, make_layer, write_oci_layout

pytestmark = pytest.mark.integration

LOWER = make_layer([("etc/secret", b"s3cret", None), ("data", None, None),
                    ("data/a", b"a", None), ("data/b", b"b", None)])
UPPER = make_layer([("etc/.wh.secret", b"", None), ("data/.wh..wh..opq", b"", None),
                    ("data/c", b"c", None)])


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("image") / "busybox.tar")


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(tmp_path / "state", tmp_path / "runc", f"berth-test-{uuid.uuid4().hex[:8]}")
    try:
        yield runtime
    finally:
        for c in await runtime.list():
            await runtime.delete(c.name)
        cgroups.remove_cgroup(runtime.cgroup_parent)


def test_docker_save_load_normalises_names(tmp_path: Path, busybox_tar: Path) -> None:
    store = ImageStore(tmp_path / "images")
    assert store.load(busybox_tar) == ["docker.io/library/busybox:latest"]
    for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest"):
        assert store.has(ref)
    image = store.resolve("busybox")
    assert image.cmd == ("sh",) and image.entrypoint is None
    assert os.readlink(image.layers[0] / "bin" / "sh") == "/bin/busybox"
    assert store.resolve(image.id).ref == image.id
    store.remove("busybox")
    assert not store.has("busybox:latest") and store.list() == []


def test_oci_layout_whiteouts_become_overlay_whiteouts(tmp_path: Path, busybox_tar: Path) -> None:
    store = ImageStore(tmp_path / "images")
    store.load(busybox_tar)
    bb_layer = store.resolve("busybox").layers[0]
    inode = (bb_layer / "bin" / "busybox").stat().st_ino
    oci = write_oci_layout(tmp_path / "oci.tar", [busybox_layer(busybox_tar), LOWER, UPPER],
                           "example.com/team/app:1.0")
    assert store.load(oci) == ["example.com/team/app:1.0"]
    image = store.resolve("example.com/team/app:1.0")
    assert image.layers[0] == bb_layer
    assert (bb_layer / "bin" / "busybox").stat().st_ino == inode, "shared layer was re-unpacked"
    whiteout = os.lstat(image.layers[2] / "etc" / "secret")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(image.layers[2] / "data", "trusted.overlay.opaque") == b"y"
    assert len(list(store.layers_dir.iterdir())) == 3
    store.load(oci)  # loading twice unpacks nothing new
    assert len(list(store.layers_dir.iterdir())) == 3


async def test_container_sees_merged_layers(rt: Runtime, tmp_path: Path,
                                            busybox_tar: Path) -> None:
    oci = write_oci_layout(tmp_path / "oci.tar", [busybox_layer(busybox_tar), LOWER, UPPER],
                           "app:1")
    rt.images.load(oci)
    script = "ls /data; test -e /etc/secret || echo gone"
    await rt.create(ContainerSpec(name="merged", service="s", node="n", image="app:1",
                                  command=("sh", "-c", script)))
    await rt.start("merged")
    assert (await rt.wait("merged", 10)).exit_code == 0
    assert [e.line async for e in rt.logs("merged")] == ["c", "gone"]


@pytest.mark.parametrize(
    "entries",
    [
        [("../escape", b"x", None)],
        [("a/../../escape", b"x", None)],
        [("link", None, "/"), ("link/escape", b"x", None)],
        [("link", None, "../.."), ("link/escape", b"x", None)],
    ],
    ids=["dotdot", "nested-dotdot", "through-absolute-symlink", "through-relative-symlink"],
)
def test_layers_never_write_outside(tmp_path: Path, entries: list[Entry]) -> None:
    store = ImageStore(tmp_path / "images")
    oci = write_oci_layout(tmp_path / "evil.tar", [make_layer(entries)], "evil:1", gzip_from=0)
    with pytest.raises(ImageFormatError):
        store.load(oci)
    assert not (tmp_path / "escape").exists() and not Path("/escape").exists()
    assert not store.has("evil:1")
    assert list(store.layers_dir.iterdir()) == []


def test_symlinks_may_point_anywhere(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    oci = write_oci_layout(tmp_path / "ok.tar",
                           [make_layer([("etc", None, None), ("etc/mtab", None, "/proc/mounts")])],
                           "links:1")
    store.load(oci)
    assert os.readlink(store.resolve("links:1").layers[0] / "etc" / "mtab") == "/proc/mounts"


def test_not_an_image(tmp_path: Path) -> None:
    bogus = tmp_path / "x.tar"
    with tarfile.open(bogus, "w") as tar:
        tar.addfile(tarfile.TarInfo("hello"), io.BytesIO(b""))
    with pytest.raises(ImageFormatError):
        ImageStore(tmp_path / "images").load(bogus)


async def test_image_stream_is_spooled_without_holding_the_event_loop(
    tmp_path: Path, busybox_tar: Path
) -> None:
    data = await asyncio.to_thread(busybox_tar.read_bytes)
    ticks = 0
    ticks_while_spooling: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def frames() -> AsyncIterator[common_pb2.ImageChunk]:
        # A stream whose frames are all buffered already never suspends by itself.
        yield common_pb2.ImageChunk(filename="busybox.tar")
        ticks_while_spooling.append(ticks)  # the spool file is open: writing starts now
        for i in range(0, len(data), 64 * 1024):
            yield common_pb2.ImageChunk(data=data[i:i + 64 * 1024])
        ticks_while_spooling.append(ticks)

    tick = asyncio.create_task(ticker())
    try:
        refs = await load_stream(ImageStore(tmp_path / "images"), frames(), tmp_path / "scratch")
    finally:
        tick.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick
    assert refs == ["docker.io/library/busybox:latest"]
    first, last = ticks_while_spooling
    assert last > first, "the event loop was held while the chunks were written"
    assert list((tmp_path / "scratch").iterdir()) == []
