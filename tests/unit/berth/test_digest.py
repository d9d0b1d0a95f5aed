"""berth.digest: strict parsing (go-digest's rules) and store paths that stay in their store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.digest import Digest, DigestError, PathEscapeError, inside, store_path

HEX = "a" * 64
STRICT = re.compile(r"sha256:[a-f0-9]{64}")


def test_parse_round_trips() -> None:
    d = Digest.parse(f"sha256:{HEX}")
    assert (d.hex, str(d)) == (HEX, f"sha256:{HEX}")
    assert Digest.of(b"") == Digest.parse(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert Digest.from_hex(HEX) == d


@pytest.mark.parametrize(
    "value",
    [
        f"sha256:{'/tmp/x/././'.ljust(64, '/')}",
        "sha256:../../../../etc/passwd",
        f"sha256:{HEX.upper()}",
        f"sha256:{HEX}\n",
        f" sha256:{HEX}",
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        f"sha512:{HEX}",
        f"SHA256:{HEX}",
        HEX,
        "",
        None,
        64,
        ["sha256:" + HEX],
    ],
    ids=["absolute-path-padded", "traversal", "upper-case", "trailing-newline",
         "leading-space", "short", "long", "other-algorithm", "upper-algorithm", "bare-hex",
         "empty", "null", "number", "list"],
)
def test_hostile_digests_are_refused_in_one_line(value: object) -> None:
    expected = r"^config: rootfs\.diff_ids\[0\]: invalid digest"
    with pytest.raises(DigestError, match=expected) as info:
        Digest.parse(value, "config: rootfs.diff_ids[0]")
    assert "\n" not in str(info.value)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(r"sha256:[a-fA-F0-9/.]{60,70}")))
def test_only_the_strict_form_parses(value: str) -> None:
    if STRICT.fullmatch(value):
        assert str(Digest.parse(value)) == value
    else:
        with pytest.raises(DigestError) as info:
            Digest.parse(value)
        assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_store_path_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    assert store_path(root, Digest(HEX), ".tar") == root.resolve() / f"{HEX}.tar"
    for escape in (root / ".." / "x", Path("/etc/passwd"), root):
        with pytest.raises(PathEscapeError, match="is outside the store"):
            inside(root, escape)
    os.symlink("/etc", root / "link")
    with pytest.raises(PathEscapeError):
        inside(root, root / "link" / "passwd")
    os.symlink("/etc", root / HEX)
    with pytest.raises(PathEscapeError):
        store_path(root, Digest(HEX))
