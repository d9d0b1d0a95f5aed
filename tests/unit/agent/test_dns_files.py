"""Unit tests for agent/dns/files.py and the resolv.conf parser in upstream.py."""

from __future__ import annotations

import pytest

from agent.dns.errors import InvalidRecord
from agent.dns.files import hosts_file, resolv_conf
from agent.dns.upstream import Upstream, parse_resolv_conf


def test_resolv_conf_defaults_to_embedded_resolver_and_ndots0() -> None:
    assert resolv_conf() == "nameserver 127.0.0.11\noptions ndots:0\n"


@pytest.mark.parametrize(
    ("search", "options", "expected"),
    [
        (["corp.example"], ["ndots:1", "timeout:1"],
         "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:1 timeout:1\n"),
        ([], [], "nameserver 127.0.0.11\n"),
    ],
    ids=["search-and-options", "no-options"],
)
def test_resolv_conf(search: list[str], options: list[str], expected: str) -> None:
    assert resolv_conf(search, options) == expected


def test_resolv_conf_rejects_injection() -> None:
    with pytest.raises(InvalidRecord):
        resolv_conf(search=["ok\nnameserver 1.1.1.1"])
    with pytest.raises(InvalidRecord):
        resolv_conf(search=["trailing.newline\n"])
    with pytest.raises(InvalidRecord):
        resolv_conf(options=["ndots:0 rotate\nnameserver 8.8.8.8"])


def test_hosts_file_names_container_and_extras() -> None:
    text = hosts_file("web-1", ["10.42.0.2"], [("gateway.local", "10.42.0.1")])
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.42.0.2\tweb-1" in lines
    assert "10.42.0.1\tgateway.local" in lines


@pytest.mark.parametrize(
    ("name", "ips", "extra"),
    [("bad name", ["10.0.0.2"], []), ("web", ["10.0.0.300"], []),
     ("web", [], [("x\ny", "10.0.0.1")]), ("web\n", ["10.0.0.2"], [])],
    ids=["space-in-name", "bad-ip", "newline-in-extra", "trailing-newline"],
)
def test_hosts_file_rejects_invalid(name: str, ips: list[str],
                                    extra: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidRecord):
        hosts_file(name, ips, extra)


def test_parse_resolv_conf_skips_loopback_and_junk() -> None:
    text = (
        "# generated\nsearch example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n"
        "nameserver ::1\nnameserver fd00::53\nnameserver not-an-ip\nnameserver\n"
    )
    assert parse_resolv_conf(text) == (Upstream("10.0.0.2"), Upstream("fd00::53"))
    assert parse_resolv_conf("") == ()
