"""Integration tests of the image store: real tars, overlayfs whiteouts, runc on top."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
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
        [(".wh...", b"", None)],
        [("d", None, None), ("d/.wh...", b"", None), ("d/.wh..", b"", None)],
    ],
    ids=["dotdot", "nested-dotdot", "through-absolute-symlink", "through-relative-symlink",
         "whiteout-of-parent", "nested-whiteout-of-parent"],
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


# --- issue 6: layers are trusted only by record; devices refused; root-only store -------

def _layer_hex(layer: bytes) -> str:
    return hashlib.sha256(layer).hexdigest()


def test_a_layer_directory_is_not_proof_of_a_layer(tmp_path: Path) -> None:
    """A directory at layers/<diff_id> that the store did not record is replaced, not used."""
    layer = make_layer([("etc", None, None), ("etc/real", b"real", None)])
    store = ImageStore(tmp_path / "images")
    planted = store.layers_dir / _layer_hex(layer)
    planted.mkdir()
    (planted / "planted").write_text("not from the image")
    store.load(write_oci_layout(tmp_path / "img.tar", [layer], "app:1"))
    (path,) = store.resolve("app:1").layers
    assert sorted(p.name for p in path.iterdir()) == ["etc"]
    assert (path / "etc" / "real").read_bytes() == b"real"


def test_a_recorded_layer_whose_directory_vanished_is_unpacked_again(tmp_path: Path) -> None:
    layer = make_layer([("a", b"a", None)])
    store = ImageStore(tmp_path / "images")
    store.load(write_oci_layout(tmp_path / "img.tar", [layer], "app:1"))
    shutil.rmtree(store.layers_dir / _layer_hex(layer))
    assert not store.has("app:1")
    store.load(tmp_path / "img.tar")
    assert (store.resolve("app:1").layers[0] / "a").read_bytes() == b"a"


def _device_layer(kind: bytes, major: int, minor: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("dev/disk")
        info.type, info.devmajor, info.devminor, info.mode = kind, major, minor, 0o666
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(("kind", "major", "minor"),
                         [(tarfile.BLKTYPE, 7, 0), (tarfile.CHRTYPE, 1, 3)],
                         ids=["loop-block-device", "char-device"])
def test_device_nodes_in_layers_are_refused(tmp_path: Path, kind: bytes, major: int,
                                            minor: int) -> None:
    store = ImageStore(tmp_path / "images")
    oci = write_oci_layout(tmp_path / "dev.tar", [_device_layer(kind, major, minor)], "dev:1")
    with pytest.raises(ImageFormatError, match="'dev/disk' is a device node; image layers "
                                               "may not contain devices"):
        store.load(oci)
    assert not store.has("dev:1") and list(store.layers_dir.iterdir()) == []


def test_existing_state_dirs_become_root_only_on_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dirs = [state, state / "containers", state / "images", state / "images" / "layers",
            state / "images" / "configs"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)    # as an older berth left them
    Runtime(state, tmp_path / "runc", "berth-test-modes")
    assert {str(d.relative_to(tmp_path)): stat.S_IMODE(d.stat().st_mode) for d in dirs} == {
        str(d.relative_to(tmp_path)): 0o700 for d in dirs}


SETPRIV = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
async def public_rt() -> AsyncIterator[Runtime]:
    """A runtime whose state dir's parent anyone may traverse, like /var/lib."""
    base = Path(tempfile.mkdtemp(prefix="berth-nobody-"))
    os.chmod(base, 0o755)
    runtime = Runtime(base / "state", base / "runc", f"berth-test-{uuid.uuid4().hex[:8]}")
    try:
        yield runtime
    finally:
        for c in await runtime.list():
            await runtime.delete(c.name)
        cgroups.remove_cgroup(runtime.cgroup_parent)
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ARGV as a plain local user. setpriv's own execve still holds root's capabilities
    (it drops them at exec), so the command is started by a shell that already is nobody."""
    return subprocess.run([*SETPRIV, "sh", "-c", 'exec "$0" "$@"', *argv],
                          capture_output=True, text=True, check=False)


async def test_finding_3_nobody_cannot_list_or_run_anything_in_the_store(
    public_rt: Runtime, tmp_path: Path, busybox_tar: Path
) -> None:
    assert shutil.which("setpriv"), "setpriv (util-linux) is required"
    bb = busybox_layer(busybox_tar)
    with tarfile.open(fileobj=io.BytesIO(bb)) as tar:
        binary = tar.extractfile("bin/busybox").read()  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bin/suid")
        info.size, info.mode = len(binary), 0o4755
        tar.addfile(info, io.BytesIO(binary))
    oci = write_oci_layout(tmp_path / "suid.tar", [bb, buf.getvalue()], "suid:1")
    public_rt.images.load(oci)
    image = public_rt.images.resolve("suid:1")
    suid = image.layers[1] / "bin" / "suid"
    assert suid.stat().st_mode & 0o4000, "setuid bits are kept, as Docker keeps them"
    await public_rt.create(ContainerSpec(name="held", service="s", node="n", image="suid:1",
                                         command=("sleep", "60")))
    await public_rt.start("held")
    rootfs = public_rt.containers_dir / "held" / "rootfs"
    assert (rootfs / "bin" / "suid").exists()
    state = public_rt.state_dir
    assert _as_nobody("ls", str(state.parent)).returncode == 0, "the test setup is wrong"
    for path in (state, state / "images", public_rt.images.layers_dir, *image.layers,
                 public_rt.images.configs_dir, public_rt.containers_dir, rootfs):
        result = _as_nobody("ls", "--", str(path))
        assert result.returncode != 0 and "Permission denied" in result.stderr, path
    for binary_path in (suid, rootfs / "bin" / "suid"):
        result = _as_nobody(str(binary_path), "id", "-u")
        assert result.returncode != 0 and result.stdout == "", binary_path
        assert "Permission denied" in result.stderr, binary_path


def test_a_whiteout_cannot_name_the_parent_of_its_layer(tmp_path: Path) -> None:
    """``.wh...`` used to whiteout ``..``: the unpack removed the whole layers/ directory."""
    store = ImageStore(tmp_path / "images")
    store.load(write_oci_layout(tmp_path / "good.tar", [make_layer([("a", b"a", None)])],
                                "good:1"))
    evil = write_oci_layout(tmp_path / "evil.tar", [make_layer([(".wh...", b"", None)])],
                            "evil:1")
    with pytest.raises(ImageFormatError, match=r"'\.wh\.\.\.' is not a valid whiteout"):
        store.load(evil)
    assert store.has("good:1") and not store.has("evil:1")
    assert (store.resolve("good:1").layers[0] / "a").read_bytes() == b"a"


def test_prune_drops_unused_layers_from_disk_and_record(tmp_path: Path) -> None:
    shared, only_a, only_b = (make_layer([(n, n.encode(), None)]) for n in ("s", "a", "b"))
    store = ImageStore(tmp_path / "images")
    store.load(write_oci_layout(tmp_path / "a.tar", [shared, only_a], "a:1"))
    store.load(write_oci_layout(tmp_path / "b.tar", [shared, only_b], "b:1"))
    held = store.resolve("b:1").layers[1]
    store.remove("b:1")
    assert store.prune(in_use={held}) == []
    removed = store.prune()
    assert [p.name for p in removed] == [_layer_hex(only_b)]
    assert {d.hex for d in store.layers.recorded()} == {_layer_hex(shared), _layer_hex(only_a)}
    assert store.has("a:1") and not store.has("b:1")
