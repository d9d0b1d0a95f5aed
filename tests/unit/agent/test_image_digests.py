"""The agent's image store against hostile digests and references (issue 6, findings 1-2).

None of these archives gets as far as unpacking a layer, so no root is needed: each is
refused while its digests are parsed, and the store stays empty.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runtime.errors import ImageFormatError, InvalidReference
from agent.runtime.images import ImageStore
from agent.runtime.reference import normalize
from tests.imagecraft import config_for, docker_files, oci_files, sha, tar_bytes, write

LAYER = tar_bytes({"hello": b"hi"})


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A short host directory (a diff_id has room for 64 characters) with a secret in it."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="bh") as d:
        (Path(d) / "secret").write_text("host secret")
        yield Path(d)


def _padded(path: Path) -> str:
    """``/tmp/bhXXXX/././...`` exactly 64 characters long: what finding 1 used."""
    text = str(path)
    while len(text) + 2 <= 64:
        text += "/."
    return text.ljust(64, "/")


def _assert_empty(store: ImageStore) -> None:
    assert store.list() == [] and not store.has("evil:1")
    assert [p.name for p in store.layers_dir.iterdir()] == []
    assert [p.name for p in store.configs_dir.iterdir()] == []


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_finding_1_diff_id_naming_a_host_directory_is_refused(
    tmp_path: Path, host_dir: Path, fmt: str
) -> None:
    hostile = "sha256:" + _padded(host_dir)
    assert len(hostile) == 71
    config = config_for([LAYER], diff_ids=[hostile])
    files = (oci_files([LAYER], config=config) if fmt == "oci"
             else docker_files([LAYER], config=config))
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageFormatError, match=r"rootfs\.diff_ids\[0\]: invalid digest") as info:
        store.load(write(tmp_path / "evil.tar", files))
    assert "\n" not in str(info.value)
    _assert_empty(store)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"layer_digests": ["sha256:../../../../etc/passwd"]}, r"layers\[0\]"),
        ({"config_digest": "sha256:" + "A" * 64}, r"config\.digest"),
        ({"manifest_digest": "sha512:" + "a" * 128}, r"manifests\[0\]\.digest"),
    ],
    ids=["layer-traversal", "config-upper-case", "manifest-other-algorithm"],
)
def test_oci_descriptor_digests_are_parsed_strictly(
    tmp_path: Path, override: dict[str, object], field: str
) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageFormatError, match=field + r".*invalid digest"):
        store.load(write(tmp_path / "evil.tar", oci_files([LAYER], **override)))  # type: ignore[arg-type]
    _assert_empty(store)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config_name": "../../../etc/passwd.json"}, "Config .* is not a digest name"),
        ({"config_name": f"{'b' * 64}.json"}, "does not match its digest"),
        ({"layer_names": ["/etc/shadow"]}, r"Layers\[0\] .* is not a layer name"),
    ],
    ids=["config-traversal", "config-wrong-digest", "layer-absolute"],
)
def test_docker_save_names_are_parsed_strictly(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    files = docker_files([LAYER], **kwargs)  # type: ignore[arg-type]
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageFormatError, match=message):
        store.load(write(tmp_path / "evil.tar", files))
    _assert_empty(store)


def test_finding_2_image_reference_cannot_reach_a_host_json(tmp_path: Path) -> None:
    """``image: sha256:../../x`` used to make the agent read any host .json as a config."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "cfg.json").write_bytes(config_for([]))
    store = ImageStore(tmp_path / "state" / "images")
    ref = "sha256:../../../host/cfg"
    assert (store.configs_dir / "../../../host/cfg.json").resolve() == host / "cfg.json"
    assert not store.has(ref)
    with pytest.raises(InvalidReference, match="invalid digest") as info:
        store.resolve(ref)
    assert "\n" not in str(info.value)


def test_corrupt_refs_json_is_one_clear_error(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    (store.root / "refs.json").write_text(json.dumps({"docker.io/library/x:1": "sha256:../x"}))
    with pytest.raises(ImageFormatError, match=r"refs\.json.*invalid digest"):
        store.list()
    assert not store.has("x:1")


def test_bounds_are_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.runtime import imageformat

    store = ImageStore(tmp_path / "images")
    big = {"oci-layout": b"{}", "index.json": b" " * (imageformat.MAX_JSON_BYTES + 1)}
    with pytest.raises(ImageFormatError, match=r"index\.json' in archive is .* the limit is"):
        store.load(write(tmp_path / "big.tar", big))
    monkeypatch.setattr(imageformat, "MAX_LAYERS", 2)
    with pytest.raises(ImageFormatError, match="manifest: layers has 3 entries; the limit is 2"):
        store.load(write(tmp_path / "many.tar", oci_files([LAYER] * 3)))
    _assert_empty(store)


def test_nested_indexes_are_bounded(tmp_path: Path) -> None:
    """An index pointing at an index ... deeper than MAX_INDEX_DEPTH is refused, not looped."""
    files = oci_files([LAYER])
    index = json.loads(files["index.json"])
    inner = index["manifests"][0]["digest"]
    for _ in range(10):
        nested = json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": [{"digest": inner}]}).encode()
        inner = sha(nested)
        files[f"blobs/sha256/{inner[7:]}"] = nested
    index["manifests"][0]["digest"] = inner
    files["index.json"] = json.dumps(index).encode()
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageFormatError, match="indexes nested more than 4 deep"):
        store.load(write(tmp_path / "deep.tar", files))
    _assert_empty(store)


@pytest.mark.parametrize(
    "ref",
    ["busybox@sha256:" + "A" * 64, "busybox@sha256:../../x", "busy\nbox", "a/b\n/c:1",
     "busybox:" + "t" * 129, "x" * 600],
    ids=["digest-upper-case", "digest-traversal", "newline-in-name", "newline-in-path",
         "tag-too-long", "reference-too-long"],
)
def test_references_are_parsed_strictly(ref: str) -> None:
    with pytest.raises(InvalidReference) as info:
        normalize(ref)
    assert "\n" not in str(info.value)
