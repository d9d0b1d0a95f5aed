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


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    return path


def test_the_default_file_is_read_when_present(tmp_path: Path) -> None:
    default = write(tmp_path, {"mtu": 1400, "labels": ["zone=a"]})
    cfg = parse(BASE, default_file=default)
    assert (cfg.mtu, cfg.labels, cfg.config_file) == (1400, {"zone": "a"}, str(default))
    missing = parse(BASE, default_file=tmp_path / "absent.json")
    assert (missing.mtu, missing.labels, missing.config_file) == (0, {}, "")


def test_defaults_without_file_or_flags(tmp_path: Path) -> None:
    cfg = parse(BASE, default_file=tmp_path / "absent.json")
    assert cfg.state_dir == Path("/var/lib/berth/agent")
    assert cfg.live_restore is True and cfg.log_level == "INFO"
    assert (cfg.log_opts.max_size, cfg.log_opts.max_file) == (None, None)
    assert cfg.dns_upstreams is None and cfg.max_archive_bytes == 8 << 30


def test_every_key_reaches_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "data-root": "/srv/berth", "live-restore": False,
        "log-opts": {"max-size": "1m", "max-file": "2"}, "dns": ["10.0.0.53"], "mtu": 1450,
        "labels": ["a=1"], "debug": True, "hosts": ["tcp://10.0.0.1:7999"],
        "max-image-archive-size": "1g",
    })
    cfg = parse([*BASE, "--config", str(path)])
    assert cfg.state_dir == Path("/srv/berth") and cfg.live_restore is False
    assert (cfg.log_opts.max_size, cfg.log_opts.max_file) == (1 << 20, 2)
    assert cfg.dns_upstreams == ("10.0.0.53",) and cfg.mtu == 1450
    assert cfg.labels == {"a": "1"} and cfg.log_level == "DEBUG"
    assert cfg.listen == "10.0.0.1:7999" and cfg.max_archive_bytes == 1 << 30


def test_every_flag_does_the_same(tmp_path: Path) -> None:
    cfg = parse([*BASE, "--state-dir", "/srv/b", "--no-live-restore", "--log-opt",
                 "max-size=64k", "--log-opt", "max-file=4", "--dns-upstreams", "10.0.0.9",
                 "--mtu", "1300", "--label", "a=1", "--label", "b=2", "-D",
                 "--max-image-archive-size", "2m"], default_file=tmp_path / "absent.json")
    assert cfg.state_dir == Path("/srv/b") and cfg.live_restore is False
    assert (cfg.log_opts.max_size, cfg.log_opts.max_file) == (64 << 10, 4)
    assert cfg.dns_upstreams == ("10.0.0.9",) and cfg.mtu == 1300
    assert cfg.labels == {"a": "1", "b": "2"} and cfg.log_level == "DEBUG"
    assert cfg.max_archive_bytes == 2 << 20


def test_an_empty_dns_list_means_the_hosts_resolvers(tmp_path: Path) -> None:
    assert parse([*BASE, "--config", str(write(tmp_path, {"dns": []}))]).dns_upstreams is None


def test_log_level_key_and_debug(tmp_path: Path) -> None:
    assert parse([*BASE, "--config", str(write(tmp_path, {"log-level": "warn"}))]
                 ).log_level == "WARNING"
    both = write(tmp_path, {"log-level": "error", "debug": True})
    assert parse([*BASE, "--config", str(both)]).log_level == "DEBUG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--mtu", "20"], "--mtu 20: expected 68..65535", id="mtu"),
        pytest.param(["--label", "nokey"], "--label: 'nokey': expected key=value", id="label"),
        pytest.param(["--log-opt", "max-size"], "--log-opt: 'max-size': expected KEY=VALUE",
                     id="log-opt-form"),
        pytest.param(["--log-opt", "compress=true"], '--log-opt: "compress": unknown key',
                     id="log-opt-key"),
        pytest.param(["--log-opt", "max-size=1"], "--log-opt: \"max-size\": '1': expected at "
                     "least 4k", id="log-opt-size"),
        pytest.param(["--max-image-archive-size", "big"], "--max-image-archive-size: 'big' "
                     "is not a size", id="bound"),
    ],
)
def test_bad_flag_values_are_one_line_naming_the_flag(tmp_path: Path, argv: list[str],
                                                      message: str) -> None:
    with pytest.raises(UserError) as info:
        parse([*BASE, *argv], default_file=tmp_path / "absent.json")
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("key", "value", "flag"),
    [
        pytest.param("data-root", "/x", ["--state-dir", "/y"], id="data-root"),
        pytest.param("live-restore", True, ["--no-live-restore"], id="live-restore"),
        pytest.param("live-restore", True, ["--live-restore"], id="live-restore-on"),
        pytest.param("log-opts", {"max-file": "2"}, ["--log-opt", "max-file=3"], id="log-opts"),
        pytest.param("default-runtime", "runc", ["--runtime", "runc"], id="default-runtime"),
        pytest.param("dns", [], ["--dns-upstreams", "none"], id="dns"),
        pytest.param("mtu", 1400, ["--mtu", "1400"], id="mtu"),
        pytest.param("labels", ["a=b"], ["--label", "a=b"], id="labels"),
        pytest.param("debug", False, ["-D"], id="debug"),
        pytest.param("debug", False, ["--debug"], id="debug-long"),
        pytest.param("log-level", "info", ["--log-level", "info"], id="log-level"),
        pytest.param("hosts", ["tcp://10.0.0.1:1"], ["--listen", "10.0.0.1:1"], id="hosts"),
        pytest.param("max-image-archive-size", "1g", ["--max-image-archive-size", "1g"],
                     id="bound"),
    ],
)
def test_each_key_given_both_ways_is_refused(tmp_path: Path, key: str, value: object,
                                             flag: list[str]) -> None:
    path = write(tmp_path, {key: value})
    shown = {"-D": "--debug", "--no-live-restore": "--live-restore"}.get(flag[0], flag[0])
    with pytest.raises(UserError, match=f'specified both as a flag and in the configuration '
                                        f'file: "{key}" \\(flag {shown} '):
        parse([*BASE, "--config", str(path), *flag])


@pytest.mark.parametrize("node", ["../h2", "h1/x", "", "_h", "..", "h" * 64])
def test_a_node_name_that_is_no_key_segment_is_refused(node: str) -> None:
    with pytest.raises(UserError) as info:
        parse([*BASE, "--node", node])
    assert str(info.value).startswith(f'--node: node name "{node}" must be 1-63 letters')
