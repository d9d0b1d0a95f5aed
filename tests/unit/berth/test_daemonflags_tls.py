"""Docker's TLS flags on both daemons (berth.daemonflags): all or nothing, never silent."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from berth.daemonflags import add_common, common
from berth.tls import TlsSettings


def _parse(argv: list[str]) -> TlsSettings | None:
    parser = argparse.ArgumentParser(prog="berth-x")
    add_common(parser, metrics_default="")
    return common(parser, parser.parse_args(argv)).tls


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    for name in ("ca.crt", "d.crt", "d.key"):
        (tmp_path / name).write_text("x")
    return ["--tlscacert", str(tmp_path / "ca.crt"), "--tlscert", str(tmp_path / "d.crt"),
            "--tlskey", str(tmp_path / "d.key")]


def test_no_flags_is_plaintext() -> None:
    assert _parse([]) is None


def test_tlsverify_with_the_three_files(files: list[str]) -> None:
    tls = _parse(["--tlsverify", *files])
    assert tls is not None and tls.cert.endswith("d.crt")
    assert tls.revocation_file.name == "revoked.json"


@pytest.mark.parametrize(("argv", "message"), [
    (["--tlscert", "x"], "--tlscert without --tlsverify"),
    (["--tlsverify"], "--tlsverify needs --tlscacert, --tlscert, --tlskey"),
    (["--tlsverify", "--tlscacert", "/no/ca", "--tlscert", "/no/c", "--tlskey", "/no/k"],
     "--tlscacert /no/ca: no such file"),
], ids=["files-without-verify", "verify-without-files", "missing-file"])
def test_incomplete_tls_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
