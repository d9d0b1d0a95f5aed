"""What an agent reports as its node's own addresses and routes (agent.registration),
read from a real network namespace with devices named like a host's and like berth's."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from agent.registration import host_prefixes
from berth.records import HostPrefix

pytestmark = pytest.mark.integration


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"wtb-hp-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    try:
        def ns(*argv: str) -> None:
            sh("ip", "-n", name, *argv)
        ns("link", "set", "lo", "up")
        for dev, peer in (("eth0", "eth0p"), ("wg0", "wg0p"), ("vo0123456789a", "vop")):
            ns("link", "add", dev, "type", "veth", "peer", "name", peer)   # no dummy module
            ns("link", "set", peer, "up")
            ns("link", "set", dev, "up")
        ns("addr", "add", "10.77.0.2/24", "dev", "eth0")
        ns("route", "add", "default", "via", "10.77.0.1")
        ns("route", "add", "172.31.0.0/16", "via", "10.77.0.254")
        ns("route", "add", "192.168.50.0/24", "dev", "wg0")
        # Devices berth creates: their addresses and routes are berth's own.
        ns("link", "add", "bo-42", "type", "bridge")
        ns("addr", "add", "10.42.0.1/24", "dev", "bo-42")
        ns("link", "set", "bo-42", "up")
        ns("route", "add", "10.43.0.0/24", "dev", "vo0123456789a")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


async def test_reports_host_addresses_and_routes_but_not_berth_s_or_the_default(
    netns: str,
) -> None:
    addresses, routes = await host_prefixes(netns)
    assert addresses == (HostPrefix(cidr="10.77.0.2/24", device="eth0"),)
    assert sorted(routes, key=lambda r: r.cidr) == [
        HostPrefix(cidr="10.77.0.0/24", device="eth0"),
        HostPrefix(cidr="172.31.0.0/16", device="eth0"),
        HostPrefix(cidr="192.168.50.0/24", device="wg0"),
    ]
