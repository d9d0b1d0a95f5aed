"""Unit tests for agent/dns/answers.py: replies built from the records table."""

from __future__ import annotations

import pytest
from dnslib import EDNS0, OPCODE, QTYPE, RCODE, DNSRecord

from agent.dns.answers import TTL, answer, pack_udp, ptr_address, udp_limit
from agent.dns.records import Records
from berth.keyspace import ContainerName, NetworkName


@pytest.fixture
def records() -> Records:
    table = Records()
    table.set_endpoint(NetworkName("appnet"), ContainerName("web-1"), "web", "10.42.0.2",
                       ["frontend"])
    table.set_endpoint(NetworkName("appnet"), ContainerName("web-2"), "web", "10.42.0.3")
    table.set_endpoint(NetworkName("dbnet"), ContainerName("db-1"), "db", "10.43.0.2")
    return table


def _ask(records: Records, name: str, qtype: str = "A",
         networks: tuple[str, ...] = ("appnet",)) -> DNSRecord | None:
    request = DNSRecord.question(name, qtype)
    reply = answer(request, records, networks)
    if reply is not None:
        # Round-trip through the wire format, as a client would see it.
        reply = DNSRecord.parse(reply.pack())
        assert reply.header.id == request.header.id
    return reply


def test_a_for_service_returns_every_replica_with_short_ttl(records: Records) -> None:
    reply = _ask(records, "web")
    assert reply is not None
    assert reply.header.rcode == RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in reply.rr) == ["10.42.0.2", "10.42.0.3"]
    assert {rr.ttl for rr in reply.rr} == {TTL}
    assert all(rr.rtype == QTYPE.A for rr in reply.rr)


@pytest.mark.parametrize(
    ("qtype", "count"), [("A", 1), ("ANY", 1), ("AAAA", 0), ("MX", 0)],
    ids=["a", "any", "aaaa-empty", "mx-empty"],
)
def test_known_name_by_type(records: Records, qtype: str, count: int) -> None:
    reply = _ask(records, "frontend.", qtype)
    assert reply is not None
    assert reply.header.rcode == RCODE.NOERROR
    assert len(reply.rr) == count


def test_name_on_other_network_is_nxdomain(records: Records) -> None:
    reply = _ask(records, "db")
    assert reply is not None
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert reply.header.aa == 1


def test_unknown_name_is_forwarded(records: Records) -> None:
    assert _ask(records, "example.org") is None


def test_ptr_for_container_ip(records: Records) -> None:
    reply = _ask(records, "3.0.42.10.in-addr.arpa", "PTR")
    assert reply is not None
    assert [str(rr.rdata) for rr in reply.rr] == ["web-2."]


def test_ptr_scope_and_forwarding(records: Records) -> None:
    hidden = _ask(records, "2.0.43.10.in-addr.arpa", "PTR")
    assert hidden is not None and hidden.header.rcode == RCODE.NXDOMAIN
    assert _ask(records, "8.8.8.8.in-addr.arpa", "PTR") is None


@pytest.mark.parametrize(
    ("qname", "expected"),
    [("4.3.2.1.in-addr.arpa.", "1.2.3.4"), ("3.2.1.in-addr.arpa.", None),
     ("x.3.2.1.in-addr.arpa.", None), ("1.0.0.0.ip6.arpa.", None)],
    ids=["ok", "short", "non-numeric", "ipv6"],
)
def test_ptr_address(qname: str, expected: str | None) -> None:
    assert ptr_address(qname) == expected


def test_non_query_opcode_is_notimp(records: Records) -> None:
    request = DNSRecord.question("web")
    request.header.opcode = OPCODE.UPDATE
    reply = answer(request, records, ["appnet"])
    assert reply is not None and reply.header.rcode == RCODE.NOTIMP


def test_oversized_udp_reply_is_truncated() -> None:
    table = Records()
    for i in range(60):
        table.set_endpoint(NetworkName("big"), ContainerName(f"web-{i}"), "web", f"10.9.0.{i + 2}")
    request = DNSRecord.question("web")
    reply = answer(request, table, ["big"])
    assert reply is not None
    packet = pack_udp(reply, udp_limit(request))
    parsed = DNSRecord.parse(packet)
    assert len(packet) <= 512
    assert parsed.header.tc == 1 and parsed.rr == []


def test_edns_buffer_size_raises_udp_limit() -> None:
    request = DNSRecord.question("web")
    request.add_ar(EDNS0(udp_len=1232))
    assert udp_limit(request) == 1232
    assert udp_limit(DNSRecord.question("web")) == 512
