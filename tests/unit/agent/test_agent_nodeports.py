"""Which ports the agent closes to containers, from its configuration (agent.nodeports)."""

from __future__ import annotations

import pytest

from agent.nodeports import configured_ports, port_of


@pytest.mark.parametrize(("address", "port"), [
    ("10.0.0.5:7071", 7071),
    ("0.0.0.0:17071", 17071),
    ("[fd00::5]:2379", 2379),
    ("https://10.0.0.5:12379", 12379),
    ("http://etcd.example:2379", 2379),
    ("", None),
    ("10.0.0.5", None),
    ("10.0.0.5:notaport", None),
    ("10.0.0.5:99999", None),
], ids=["ipv4", "wildcard", "ipv6", "https-url", "http-name", "empty", "no-port", "junk",
        "out-of-range"])
def test_port_of(address: str, port: int | None) -> None:
    assert port_of(address) == port


def test_every_endpoint_of_a_list_counts() -> None:
    assert configured_ports(["10.0.0.1:7071", "", "10.0.0.1:12379,10.0.0.2:22379",
                             "ctl:7700"]) == [7071, 7700, 12379, 22379]
