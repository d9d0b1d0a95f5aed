"""Which ports the agent closes to containers, and on which hosts (agent.nodeports)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from agent.nodeports import Peers, configured_ports, follow_peers, ipv4_host_of, port_of
from berth.etcd import DeleteEvent, KVMeta, Listing, PutEvent
from berth.records import NodeRecord
from netplugins.errors import KernelError
from netplugins.firewall import NodePorts
from tests.unit.agent.test_reconcile import FakeKV


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


@pytest.mark.parametrize(("address", "host"), [
    ("10.0.0.5:7071", "10.0.0.5"),
    ("https://10.0.0.6:2379", "10.0.0.6"),
    ("etcd.example:2379", None),
    ("[fd00::5]:2379", None),
    ("", None),
    ("10.0.0.256:1", None),
], ids=["ipv4", "https-url", "name", "ipv6", "empty", "bad-octet"])
def test_ipv4_host_of(address: str, host: str | None) -> None:
    assert ipv4_host_of(address) == host


def test_peers_follow_node_records_and_ignore_hostile_addresses() -> None:
    def record(name: str, address: str) -> bytes:
        return NodeRecord(name=name, address=address, agent_addr=f"{address}:7071").dumps()

    peers = Peers(frozenset({"10.0.0.100"}))
    meta = KVMeta(key="", create_revision=1, mod_revision=1, version=1, lease=0)
    listing = Listing(items=(
        (record("h1", "10.0.0.1"), dataclasses.replace(meta, key="/berth/nodes/h1")),
        (record("h2", "10.0.0.2 } accept"), dataclasses.replace(meta, key="/berth/nodes/h2")),
        (b"{not json", dataclasses.replace(meta, key="/berth/nodes/h3")),
    ), revision=5)
    peers.replace(listing)
    assert peers.addresses() == {"10.0.0.100", "10.0.0.1"}
    peers.apply(PutEvent("/berth/nodes/h2", record("h2", "10.0.0.2"), meta))
    assert peers.addresses() == {"10.0.0.100", "10.0.0.1", "10.0.0.2"}
    peers.apply(DeleteEvent("/berth/nodes/h1", meta))
    peers.apply(PutEvent("/berth/nodes/h2", record("h2", "fd00::2"), meta))
    assert peers.addresses() == {"10.0.0.100"}


class _BrokenFirewall:
    """A firewall whose every change fails (nft gone, say): what follow_peers must not hide."""

    node_ports: NodePorts | None = None

    async def ensure_node_ports(self, ports: NodePorts) -> bool:
        raise KernelError("nft -f - failed: no such file")


async def test_a_failed_firewall_change_ends_follow_peers_so_it_is_restarted() -> None:
    etcd = FakeKV()
    await etcd.put("/berth/nodes/h2", NodeRecord(name="h2", address="10.0.0.2",
                                                 agent_addr="10.0.0.2:7071").dumps())
    firewall: Any = _BrokenFirewall()
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.timeout(5):
            await follow_peers(etcd, firewall, NodePorts(), frozenset())
    assert caught.group_contains(KernelError)
