"""Image loads in a two-host lab, as a user sees them (issue 6, findings 1, 3 and 4).

A crafted archive is refused by the nodes with one line naming the node and the field,
and leaves nothing registered; a good one reaches both nodes; every node's store is
root-only.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Lab
from tests.imagecraft import config_for, docker_files, tar_bytes, write

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab]) -> Iterator[Lab]:
    yield lab_factory(2)


def _image_keys(lab: Lab) -> list[str]:
    async def keys() -> list[str]:
        async with lab.etcd() as etcd:
            listing = await etcd.get_prefix("/berth/images/")
            return [meta.key for _, meta in listing.items]
    return asyncio.run(keys())


def _refs(host: dict[str, object]) -> dict[str, str]:
    path = Path(str(host["state_dir"])) / "images" / "refs.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def test_crafted_image_is_refused_and_nothing_is_registered(lab: Lab, tmp_path: Path) -> None:
    layer = tar_bytes({"hello": b"hi"})
    hostile = "sha256:" + "/etc/././".ljust(64, "/")
    archive = write(tmp_path / "evil.tar",
                    docker_files([layer], "evil:1", config_for([layer], diff_ids=[hostile])))
    before = _image_keys(lab)
    proc = lab.ctl("image", "load", str(archive), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "rejected the image: config of manifest.json[0]: rootfs.diff_ids[0]: invalid digest" \
        in lines[0]
    assert lines[0].endswith("the image was not loaded on any node")
    assert "<class" not in proc.stderr and "Traceback" not in proc.stderr
    assert _image_keys(lab) == before
    assert all("docker.io/library/evil:1" not in _refs(h) for h in lab.info["hosts"])


def test_good_image_reaches_every_node(lab: Lab, tmp_path: Path) -> None:
    from berth.busybox import build_busybox_image

    archive = build_busybox_image(tmp_path / "bb.tar", ref="sec/busybox:1")
    proc = lab.ctl("image", "load", str(archive))
    assert "Loaded image: sec/busybox:1" in proc.stdout
    assert "/berth/images/sec/busybox:1" in _image_keys(lab)
    assert all("docker.io/sec/busybox:1" in _refs(h) for h in lab.info["hosts"])


def test_every_node_store_is_root_only(lab: Lab) -> None:
    for host in lab.info["hosts"]:
        state = Path(str(host["state_dir"]))
        for path in (state, state / "images", state / "images" / "layers",
                     state / "images" / "configs", state / "containers"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
