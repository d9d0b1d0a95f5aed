"""berth.daemonconfig: reading, refusing and merging a daemon's configuration file.

The agent's key model (agent.configfile.AgentFile) stands in for "a daemon's model"; the
controller's own keys are tested in tests/unit/controller/test_config.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.configfile import AgentFile
from berth import daemonconfig
from berth.errors import UserError

WHERE = Path("/etc/berth/agent.json")


def refusal(raw: bytes | str) -> str:
    with pytest.raises(UserError) as info:
        daemonconfig.parse(WHERE, raw.encode() if isinstance(raw, str) else raw, AgentFile)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{WHERE}: ")
    return text.removeprefix(f"{WHERE}: ")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param('{"max-sise": "1m"}', '"max-sise": unknown key', id="unknown"),
        pytest.param('{"log-opts": {"max-sise": "1m"}}', '"log-opts.max-sise": unknown key',
                     id="unknown-nested"),
        pytest.param('{"registry-mirrors": []}', '"registry-mirrors": not supported yet',
                     id="registry-mirrors"),
        pytest.param('{"insecure-registries": []}', '"insecure-registries": not supported yet',
                     id="insecure-registries"),
        pytest.param('{"mtu": "1400"}', '"mtu": expected integer', id="mtu-string"),
        pytest.param('{"mtu": 67}', '"mtu": expected greater than or equal to 68', id="mtu-low"),
        pytest.param('{"debug": 1}', '"debug": expected boolean', id="debug-int"),
        pytest.param('{"live-restore": "false"}', '"live-restore": expected boolean',
                     id="live-restore-string"),
        pytest.param('{"log-opts": {"max-size": "10x"}}',
                     '"log-opts.max-size": \'10x\' is not a size', id="size-unit"),
        pytest.param('{"log-opts": {"max-size": "1k"}}',
                     '"log-opts.max-size": \'1k\': expected at least 4k', id="size-small"),
        pytest.param('{"log-opts": {"max-file": "0"}}', '"log-opts.max-file": expected a '
                     'string with a number of files from 1 to 1000', id="files-zero"),
        pytest.param('{"log-opts": {"max-file": 3}}', '"log-opts.max-file": expected a string',
                     id="files-int"),
        pytest.param('{"labels": {"a": "b"}}', '"labels": expected a list of "key=value" labels',
                     id="labels-object"),
        pytest.param('{"labels": ["a=b", "a=c"]}',
                     "\"labels\": label 'a' is given twice with different values",
                     id="labels-twice"),
        pytest.param('{"labels": ["=b"]}', "\"labels\": '=b': expected key=value", id="label-key"),
        pytest.param('{"dns": ["dns.example"]}', "\"dns\": 'dns.example' is not an IP address",
                     id="dns-name"),
        pytest.param('{"hosts": ["tcp://a:1", "tcp://b:2"]}',
                     '"hosts": berth listens on one address; got 2', id="two-hosts"),
        pytest.param('{"hosts": ["fd://"]}', '"hosts": \'fd://\': berth listens on TCP only',
                     id="fd-host"),
        pytest.param('{"hosts": ["tcp://a"]}', "\"hosts\": 'tcp://a': expected tcp://HOST:PORT",
                     id="no-port"),
        pytest.param('{"data-root": "var/lib"}',
                     "\"data-root\": 'var/lib': expected an absolute path", id="relative-root"),
        pytest.param('{"log-level": "trace"}', "\"log-level\": 'trace': expected one of",
                     id="level"),
        pytest.param('{"max-image-archive-size": "1k"}',
                     "\"max-image-archive-size\": '1k': expected at least 1m", id="bound-small"),
        pytest.param('{"runtimes": {"x": {"path": 3}}}', '"runtimes.x.path": expected string',
                     id="runtime-path"),
        pytest.param('{"debug": true, "debug": false}', '"debug": given twice', id="repeated"),
        pytest.param('{"data-root": null}', '"data-root": expected a value, not null',
                     id="null"),
        pytest.param("[]", "expected a JSON object ({...}) at the top", id="array"),
        pytest.param('"x"', "expected a JSON object ({...}) at the top", id="string"),
        pytest.param("", "not valid JSON at line 1: Expecting value", id="empty"),
        pytest.param('{"mtu": 1400,}', "not valid JSON at line 1", id="trailing-comma"),
        pytest.param("[" * 100_000, "not valid JSON", id="deep"),
        pytest.param(b"{\"labels\": [\"a=\xff\"]}", "not UTF-8 text (byte 15)", id="not-utf8"),
    ],
)
def test_each_problem_is_one_line_naming_the_file_and_key(raw: str, problem: str) -> None:
    assert refusal(raw).startswith(problem)


def test_a_valid_file_gives_typed_values() -> None:
    data = daemonconfig.parse(WHERE, json.dumps({
        "log-opts": {"max-size": "10m", "max-file": "3"}, "labels": ["zone=a", "zone=a"],
        "dns": ["10.0.0.53", "fd00::53"], "hosts": ["tcp://10.0.0.1:7071"],
        "max-image-archive-size": "2g", "log-level": "warn", "mtu": 9000,
    }).encode(), AgentFile)
    assert data.log_opts is not None
    assert (data.log_opts.max_size, data.log_opts.max_file) == (10 << 20, 3)
    assert data.labels == {"zone": "a"}
    assert data.dns == ("10.0.0.53", "fd00::53")
    assert data.hosts == "10.0.0.1:7071"
    assert data.max_image_archive_size == 2 << 30
    assert (data.log_level, data.mtu) == ("WARNING", 9000)


def test_an_absent_default_file_is_no_file_and_a_named_one_must_exist(tmp_path: Path) -> None:
    loaded = daemonconfig.load(None, tmp_path / "agent.json", AgentFile)
    assert loaded.path is None and loaded.keys == frozenset()
    with pytest.raises(UserError, match="cannot read the configuration file: No such file"):
        daemonconfig.load(tmp_path / "named.json", tmp_path / "agent.json", AgentFile)


def test_the_default_file_is_read_when_present(tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text('{"mtu": 1400, "debug": false}')
    loaded = daemonconfig.load(None, tmp_path / "agent.json", AgentFile)
    assert loaded.path == tmp_path / "agent.json"
    assert loaded.keys == {"mtu", "debug"}


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_bytes(b" " * (daemonconfig.MAX_FILE_BYTES + 1))
    with pytest.raises(UserError, match="larger than 1048576 bytes"):
        daemonconfig.load(path, path, AgentFile)


def test_conflicts_name_every_key_given_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text('{"mtu": 1400, "labels": ["a=b"], "bip": "10.1.0.1/24"}')
    loaded = daemonconfig.load(path, path, AgentFile)
    ns = argparse.Namespace(mtu=1300, label=["c=d", "e=f"], bip=None)
    with pytest.raises(UserError) as info:
        daemonconfig.check_conflicts(loaded, ns, {"mtu": "--mtu", "labels": "--label",
                                                  "bip": "--bip"})
    assert str(info.value) == (
        f"{path}: the following directives are specified both as a flag and in the "
        f'configuration file: "labels" (flag --label c=d,e=f), "mtu" (flag --mtu 1300)')


@pytest.mark.parametrize(("text", "size"), [("4096", 4096), ("10k", 10240), ("10m", 10 << 20),
                                            ("2G", 2 << 30), ("20mb", 20 << 20)],
                         ids=["bytes", "k", "m", "g", "mb"])
def test_sizes_count_in_1024s_as_dockerd(text: str, size: int) -> None:
    assert daemonconfig.parse_size(text) == size


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
KEYS = st.sampled_from(sorted(name for name in (
    f.alias or key for key, f in AgentFile.model_fields.items())))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, JSON, max_size=4) | JSON)
def test_any_json_is_a_model_or_one_line(value: object) -> None:
    raw = json.dumps(value).encode()
    try:
        daemonconfig.parse(WHERE, raw, AgentFile)
    except UserError as exc:
        text = str(exc)
        assert text.startswith(f"{WHERE}: ") and "\n" not in text
        assert "AgentFile" not in text and "LogOpts" not in text and "Runtime" not in text


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=64))
def test_any_bytes_are_a_model_or_one_line(raw: bytes) -> None:
    try:
        daemonconfig.parse(WHERE, raw, AgentFile)
    except UserError as exc:
        assert "\n" not in str(exc)
