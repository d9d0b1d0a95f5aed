"""The controller's flags merged with /etc/berth/controller.json (controller.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.errors import UserError
from controller.config import parse


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "controller.json"
    path.write_text(json.dumps(data))
    return path


def test_defaults(tmp_path: Path) -> None:
    cfg = parse([], default_file=tmp_path / "absent.json")
    assert (cfg.listen, cfg.state_dir, cfg.log_level) == (
        "127.0.0.1:7700", Path("/var/lib/berth/controller"), "INFO")
    assert (cfg.limits.max_replicas, cfg.limits.max_containers_per_node) == (100, 110)
    assert cfg.max_archive_bytes == 8 << 30 and cfg.config_file == ""


def test_every_key_reaches_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, {"data-root": "/srv/ctl", "debug": True,
                            "hosts": ["tcp://0.0.0.0:7701"], "max-replicas": 7,
                            "max-containers-per-node": 9, "max-image-archive-size": "3m"})
    cfg = parse([], default_file=path)
    assert (cfg.listen, cfg.state_dir, cfg.log_level) == ("0.0.0.0:7701", Path("/srv/ctl"),
                                                          "DEBUG")
    assert (cfg.limits.max_replicas, cfg.limits.max_containers_per_node) == (7, 9)
    assert cfg.max_archive_bytes == 3 << 20 and cfg.config_file == str(path)


def test_flags_do_the_same(tmp_path: Path) -> None:
    cfg = parse(["--listen", "10.0.0.1:1", "--state-dir", "/s", "--debug", "--max-replicas",
                 "3", "--max-containers-per-node", "4", "--max-image-archive-size", "5m"],
                default_file=tmp_path / "absent.json")
    assert (cfg.listen, cfg.state_dir, cfg.log_level) == ("10.0.0.1:1", Path("/s"), "DEBUG")
    assert (cfg.limits.max_replicas, cfg.limits.max_containers_per_node) == (3, 4)
    assert cfg.max_archive_bytes == 5 << 20


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param({"mtu": 1400}, '"mtu": unknown key', id="agent-key"),
        pytest.param({"max-replicas": 0}, '"max-replicas": expected greater than or equal to 1',
                     id="zero-replicas"),
        pytest.param({"registry-mirrors": []}, '"registry-mirrors": not supported yet',
                     id="not-yet"),
        pytest.param({"hosts": "tcp://a:1"}, '"hosts": expected a list', id="hosts-string"),
    ],
)
def test_bad_files_are_one_line(tmp_path: Path, data: object, problem: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(UserError) as info:
        parse(["--config", str(path)])
    assert str(info.value).startswith(f"{path}: {problem}")


def test_key_and_flag_both_given_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"max-replicas": 5, "hosts": ["tcp://127.0.0.1:1"]})
    with pytest.raises(UserError) as info:
        parse(["--config", str(path), "--max-replicas", "6", "--listen", "127.0.0.1:2"])
    assert str(info.value) == (
        f"{path}: the following directives are specified both as a flag and in the "
        f'configuration file: "hosts" (flag --listen 127.0.0.1:2), "max-replicas" '
        f"(flag --max-replicas 6)")


def test_zero_limits_by_flag_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="at least 1"):
        parse(["--max-replicas", "0"], default_file=tmp_path / "absent.json")


def pem_files(tmp_path: Path) -> dict[str, str]:
    files = {}
    for key in ("tlscacert", "tlscert", "tlskey"):
        (tmp_path / key).write_text("")
        files[key] = str(tmp_path / key)
    return files


def test_tls_keys_make_the_tls_settings(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    cfg = parse([], default_file=write(tmp_path, {"tlsverify": True, **files}))
    assert cfg.tls is not None
    assert (cfg.tls.ca, cfg.tls.cert, cfg.tls.key) == (
        files["tlscacert"], files["tlscert"], files["tlskey"])
    assert parse([], default_file=tmp_path / "absent.json").tls is None


def test_tls_keys_and_flags_mix_but_never_for_one_key(tmp_path: Path) -> None:
    files = pem_files(tmp_path)
    path = write(tmp_path, {"tlscert": files["tlscert"], "tlskey": files["tlskey"]})
    cfg = parse(["--config", str(path), "--tlsverify", "--tlscacert", files["tlscacert"]])
    assert cfg.tls is not None and cfg.tls.cert == files["tlscert"]
    with pytest.raises(UserError, match='"tlscert" \\(flag --tlscert '):
        parse(["--config", str(path), "--tlsverify", "--tlscacert", files["tlscacert"],
               "--tlscert", files["tlscert"]])
    both = write(tmp_path, {"tlsverify": True, **files})
    with pytest.raises(UserError, match='"tlsverify" \\(flag --tlsverify true\\)'):
        parse(["--config", str(both), "--tlsverify"])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param({"tls": True}, '"tls": true without "tlsverify"', id="tls-alone"),
        pytest.param({"tls": False, "tlsverify": True}, '"tls": false, but "tlsverify"',
                     id="tls-false-verify"),
        pytest.param({"tlsverify": True}, "\"tlsverify\": true needs 'tlscacert', 'tlscert', "
                     "'tlskey' (or their flags)", id="verify-without-files"),
        pytest.param({"tlskey": "/k"}, '"tlskey": given without "tlsverify": true', id="key"),
        pytest.param({"tlsverify": "yes"}, '"tlsverify": expected boolean', id="verify-type"),
    ],
)
def test_tls_key_problems_are_one_line(tmp_path: Path, data: dict[str, object],
                                       problem: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(UserError) as info:
        parse(["--config", str(path)])
    assert str(info.value).startswith(f"{path}: {problem}")


def test_tls_with_tlsverify_is_mtls(tmp_path: Path) -> None:
    cfg = parse([], default_file=write(tmp_path, {"tls": True, "tlsverify": True,
                                                  **pem_files(tmp_path)}))
    assert cfg.tls is not None
