"""Agent configuration: daemon.json runtimes, refusals, DNS upstream flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import parse
from berth.errors import UserError

BASE = ["--underlay-ip", "10.0.0.1"]


def test_runtime_comes_from_daemon_json(tmp_path: Path) -> None:
    cfg_file = tmp_path / "daemon.json"
    cfg_file.write_text(
        json.dumps({"default-runtime": "alt", "runtimes": {"alt": {"path": "true"}}})
    )
    cfg = parse([*BASE, "--config", str(cfg_file)])
    assert cfg.runtime_bin.endswith("/true")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param({"max-sise": "1m"}, '"max-sise": unknown key', id="unknown-key"),
        pytest.param({"registry-mirrors": []}, '"registry-mirrors": not supported yet',
                     id="registry-mirrors"),
        pytest.param([], "expected a JSON object", id="not-an-object"),
        pytest.param(
            {"runtimes": {"x": {"path": 3}}, "default-runtime": "x"},
            '"runtimes.x.path": expected string',
            id="bad-path",
        ),
        pytest.param({"default-runtime": 7}, '"default-runtime": expected string',
                     id="bad-type"),
        pytest.param('{"runtimes": ', "not valid JSON", id="not-json"),
    ],
)
def test_bad_daemon_json_is_refused(tmp_path: Path, content: object, message: str) -> None:
    cfg_file = tmp_path / "daemon.json"
    cfg_file.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError, match=message) as info:
        parse([*BASE, "--config", str(cfg_file)])
    assert str(info.value).startswith(f"{cfg_file}: ") and "\n" not in str(info.value)


def test_missing_runtime_is_refused() -> None:
    with pytest.raises(UserError, match="not found"):
        parse([*BASE, "--runtime", "no-such-oci-runtime"])


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        pytest.param("host", None, id="host-resolv-conf"),
        pytest.param("none", (), id="none-fails-fast"),
        pytest.param("10.0.0.53, 10.0.0.54", ("10.0.0.53", "10.0.0.54"), id="list"),
    ],
)
def test_dns_upstreams(flag: str, expected: tuple[str, ...] | None) -> None:
    assert parse([*BASE, "--dns-upstreams", flag]).dns_upstreams == expected


def test_bad_dns_upstream_is_refused() -> None:
    with pytest.raises(UserError, match="not an IP address"):
        parse([*BASE, "--dns-upstreams", "10.0.0.53,dns.example"])


def test_listen_defaults_to_the_underlay_address_not_every_interface() -> None:
    assert parse(BASE).listen == "10.0.0.1:7071"
    assert parse(["--underlay-ip", "fd00::5"]).listen == "[fd00::5]:7071"


def test_explicit_wildcard_listen_is_allowed_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = parse([*BASE, "--listen", "0.0.0.0:7072"])
    assert cfg.listen == "0.0.0.0:7072"
    # Peers are told the underlay address, never the wildcard.
    assert cfg.advertise == "10.0.0.1:7072"
    assert "every interface" in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--underlay-ip", "eth0"], "--underlay-ip 'eth0': not an IP", id="bad-ip"),
        pytest.param([*BASE, "--listen", "7071"], "expected HOST:PORT", id="no-host"),
        pytest.param([*BASE, "--listen", "1.2.3.4:x"], "expected HOST:PORT", id="bad-port"),
    ],
)
def test_bad_listen_or_underlay_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse(argv)
