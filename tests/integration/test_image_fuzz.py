"""Property-based fuzzing of the agent's image loader (issue 6) with hypothesis.

Random docker-save and OCI-layout archives whose layers hold traversal names, absolute
paths, symlinks and hard links that lead out, devices, whiteouts, odd owners and modes
and xattrs, and whose JSON and digests are broken or hostile. For every archive:

- ``ImageStore.load`` returns, or raises ImageFormatError: nothing else, ever;
- the message is one line without a Python class name or a traceback;
- nothing outside the store root changed (a snapshot of the tree around the store,
  including a directory that symlinks and hard links point at);
- the store is consistent: no unpack left over, every recorded layer has its directory,
  every tag resolves, and a refused archive tagged nothing.

Needs root (layers carry owners, whiteouts are device nodes 0/0, xattrs are trusted.*).
CI runs the fixed budget below; ``BERTH_FUZZ_EXAMPLES=5000`` runs a longer one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.runtime.errors import ImageFormatError
from agent.runtime.images import ImageStore
from tests.imagecraft import config_for, docker_files, oci_files, sha, tar_bytes

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "200"))
OUT = "@OUT@"   # replaced by the absolute path of the directory outside the store

NAMES = ["a", "a/b", "d", "d/f", "./d/g", "d/", "../x", "../../../../x", "a/../../x",
         "/abs", f"{OUT}/planted", "l", "l/x", "l/../x", "h", "d/.wh.f", ".wh.a",
         "d/.wh..wh..opq", ".wh..wh..opq", ".wh.", ".wh...", "d/.wh...", ".wh..", "a//b",
         "..\\x", "x" * 300, "dev/sda"]
LINKS = ["/", "..", "../../../..", "/etc/passwd", "a", "d", "d/f", "../outside/file",
         OUT, f"{OUT}/file", "missing", "l/x", ""]
KINDS = ["file", "dir", "sym", "hard", "chr", "chr00", "blk", "fifo"]
XATTRS = [None, "user.x", "security.capability", "trusted.overlay.redirect",
          "trusted.overlay.opaque", "trusted.x"]
HOSTILE_DIGESTS = ["sha256:../../../../x", "sha256:" + f"{OUT}/./".ljust(64, "/"),
                   "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha512:" + "a" * 128,
                   "", None, 7, ["sha256:" + "a" * 64], {"x": 1}]

entries = st.lists(st.tuples(
    st.sampled_from(KINDS), st.sampled_from(NAMES), st.sampled_from(LINKS),
    st.integers(0, 0o7777), st.sampled_from([0, 1, 65534, 2**31, 2**32 - 1, 2**40]),
    st.sampled_from(XATTRS),
), max_size=8)


def _layer(items: list[tuple[str, str, str, int, int, str | None]], outside: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, link, mode, owner, xattr in items:
            info = tarfile.TarInfo(name.replace(OUT, outside))
            info.mode, info.uid, info.gid = mode, owner, owner
            if xattr:
                info.pax_headers = {f"SCHILY.xattr.{xattr}": "y"}
            data = b""
            if kind == "file":
                data = b"content"
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = link.replace(OUT, outside)
            elif kind in ("chr", "chr00", "blk"):
                info.type = tarfile.BLKTYPE if kind == "blk" else tarfile.CHRTYPE
                info.devmajor, info.devminor = (0, 0) if kind == "chr00" else (7, 0)
            else:
                info.type = tarfile.FIFOTYPE
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


MUTATIONS = ["none", "diff_id", "layer_digest", "config_digest", "manifest_digest",
             "bad_config_json", "config_not_object", "bad_index_json", "drop_blob",
             "truncate_layer", "gzip_layer", "garbage_layer", "few_diff_ids", "docker_names",
             "random_archive"]


@st.composite
def archives(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(["oci", "docker"])), {
        "layers": draw(st.lists(entries, min_size=0, max_size=3)),
        "mutation": draw(st.sampled_from(MUTATIONS)),
        "hostile": draw(st.sampled_from(HOSTILE_DIGESTS)),
        "junk": draw(st.binary(max_size=64)),
        "ref": draw(st.sampled_from(["app:1", "1.0", "UPPER:x", "a/b/c:d", ""])),
    }


def _build(fmt: str, spec: dict[str, Any], outside: str) -> bytes:
    mutation, hostile = spec["mutation"], spec["hostile"]
    if mutation == "random_archive":
        return bytes(spec["junk"])
    layers = [_layer(items, outside) for items in spec["layers"]]
    diff_ids: list[Any] = [sha(layer) for layer in layers]
    if mutation == "gzip_layer" and layers:
        layers[0] = gzip.compress(layers[0], mtime=0)
    elif mutation == "truncate_layer" and layers:
        layers[0] = layers[0][: len(layers[0]) // 2]
    elif mutation == "garbage_layer" and layers:
        layers[0] = bytes(spec["junk"]) or b"\0"
    if mutation == "diff_id" and diff_ids:
        diff_ids[0] = hostile
    if mutation == "few_diff_ids":
        diff_ids = diff_ids[:-1] if diff_ids else [sha(b"")]
    config = config_for(layers, diff_ids)
    if mutation == "bad_config_json":
        config = b"{" + bytes(spec["junk"])
    elif mutation == "config_not_object":
        config = b"[1, 2]"
    if fmt == "oci":
        kwargs: dict[str, Any] = {}
        if mutation in ("layer_digest", "config_digest", "manifest_digest"):
            key = mutation + ("s" if mutation == "layer_digest" else "")
            kwargs[key] = [hostile] * len(layers) if mutation == "layer_digest" else hostile
        files = oci_files(layers, spec["ref"], config, **kwargs)
        if mutation == "bad_index_json":
            files["index.json"] = bytes(spec["junk"])
    else:
        names = ([f"../{sha(layer)[7:]}/layer.tar" for layer in layers]
                 if mutation == "docker_names" else None)
        files = docker_files(layers, spec["ref"], config, layer_names=names)
        if mutation == "bad_index_json":
            files["manifest.json"] = bytes(spec["junk"])
    if mutation == "drop_blob":
        blobs = sorted(n for n in files if n.startswith("blobs/"))
        if blobs:
            del files[blobs[0]]
    return tar_bytes(files)


def _snapshot(base: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    seen: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in [*dirnames, *filenames]:
            path = here / name
            st_ = os.lstat(path)
            body: Any = None
            if path.is_symlink():
                body = os.readlink(path)
            elif path.is_file():
                body = hashlib.sha256(path.read_bytes()).hexdigest()
            mtime = None if path == skip else st_.st_mtime_ns
            seen[str(path)] = (st_.st_mode, st_.st_uid, st_.st_gid, st_.st_nlink, mtime, body)
    return seen


def _assert_consistent(store: ImageStore, refs: list[str] | None) -> None:
    layers = store.layers_dir
    assert [p.name for p in layers.iterdir() if p.name.startswith(".")] == []
    for digest in store.layers.recorded():
        assert (layers / digest.hex).is_dir()
    for cfg in store.configs_dir.iterdir():
        assert cfg.name == f"{hashlib.sha256(cfg.read_bytes()).hexdigest()}.json"
    if refs is None:
        assert store.list() == []
    for ref in store.list() + (refs or []):
        for path in store.resolve(ref).layers:
            assert path.parent == layers.resolve() and path.is_dir(), path


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(archives())
def test_loader_never_crashes_or_writes_outside_the_store(archive: tuple[str, dict[str, Any]]
                                                          ) -> None:
    fmt, spec = archive
    with tempfile.TemporaryDirectory(prefix="berth-fuzz-") as d:
        base = Path(d)
        outside = base / "outside"
        outside.mkdir()
        (outside / "file").write_bytes(b"host file")
        root = base / "store"
        root.mkdir()
        src = base / "in.tar"
        src.write_bytes(_build(fmt, spec, str(outside)))
        before = _snapshot(base, root)
        store = ImageStore(root)
        refs: list[str] | None = None
        try:
            refs = store.load(src)
            event("loaded")
        except ImageFormatError as exc:
            message = str(exc)
            event("refused: " + re.sub(r"[0-9a-f]{64}|'[^']*'", "_", message)[:60])
            assert message and "\n" not in message and "\r" not in message
            assert "<class" not in message and "Traceback" not in message
        assert _snapshot(base, root) == before
        _assert_consistent(store, refs)
        assert not Path("/abs").exists() and not Path("/x").exists()
