"""Hostile input for the embedded DNS server: random packets and mutated real queries.

The handler that turns one raw packet into a reply (``DnsServer._reply``, what the UDP
and TCP listeners call) and the TCP framing loop (``_serve_tcp``) are driven directly,
with a real records table and no upstreams, so nothing leaves the process. Properties:

* nothing raises, whatever the bytes;
* the answer is silence or a reply that parses, with the query's id;
* a UDP reply fits 512 bytes, or the client's EDNS0 size; a TCP one fits its 2-byte
  length prefix, and every TCP frame written is exactly one length-prefixed reply.

CI runs ``FUZZ_EXAMPLES`` examples per property (500 by default, derandomized);
``BERTH_FUZZ_EXAMPLES=20000`` gives the long run.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dnslib import EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.dns.records import Records
from agent.dns.server import DnsServer, _Listener

FUZZ_EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NETWORKS = frozenset({"appnet"})
NAMES = ["web", "web-1", "frontend", "big", "db", "nosuch.example", "1.0.42.10.in-addr.arpa",
         "2.0.42.10.in-addr.arpa", "x" * 63 + ".y"]
QTYPES = ["A", "AAAA", "ANY", "PTR", "MX", "TXT", "SRV", "CNAME", "NS", "SOA", "OPT", "AXFR"]


@dataclass(frozen=True)
class _Ep:
    network: str
    container: str
    service: str
    ip: str
    aliases: tuple[str, ...] = ()


def _records() -> Records:
    table = Records()
    table.replace_all([
        _Ep("appnet", "web-1", "web", "10.42.0.1", ("frontend",)),
        _Ep("dbnet", "db-1", "db", "10.43.0.2"),
        # Enough replicas that an A answer does not fit 512 bytes: truncation paths run.
        *(_Ep("appnet", f"big-{i}", "big", f"10.42.{i // 250}.{i % 250 + 2}")
          for i in range(2, 200)),
    ])
    return table


class _Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(self._make())
        self.listener = _Listener("fuzz-1", None, NETWORKS)  # type: ignore[arg-type]

    @staticmethod
    async def _make() -> DnsServer:
        return DnsServer(_records(), upstreams=())

    def reply(self, data: bytes, *, tcp: bool) -> bytes | None:
        return self.loop.run_until_complete(self.server._reply(self.listener, data, tcp=tcp))

    def serve_tcp(self, stream: bytes) -> list[bytes]:
        writer = _FakeWriter()

        async def go() -> None:
            reader = asyncio.StreamReader()
            reader.feed_data(stream)
            reader.feed_eof()
            await self.server._serve_tcp(self.listener, reader, writer)  # type: ignore[arg-type]

        self.loop.run_until_complete(go())
        return writer.chunks

    def close(self) -> None:
        self.loop.run_until_complete(self.server.close())
        self.loop.close()


class _FakeWriter:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def harness() -> Iterator[_Harness]:
    h = _Harness()
    yield h
    h.close()


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """A valid query (maybe with EDNS0, odd opcode or flags), then maybe mutated."""
    # DNSRecord.question would draw the id from ``random``; hypothesis must own it.
    header = DNSHeader(id=draw(st.integers(0, 0xFFFF)), rd=draw(st.integers(0, 1)),
                       opcode=draw(st.sampled_from([0, 0, 0, 1, 2, 4, 5, 15])))
    qtype = getattr(QTYPE, draw(st.sampled_from(QTYPES)))
    request = DNSRecord(header, q=DNSQuestion(draw(st.sampled_from(NAMES)), qtype))
    if draw(st.booleans()):
        request.add_ar(EDNS0(udp_len=draw(st.integers(0, 0xFFFF))))
    if draw(st.integers(0, 5)) == 0:
        request.add_question(*request.questions)
    packet = bytearray(request.pack())
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "junk", "count"]))
        if kind == "flip" and packet:
            at = draw(st.integers(0, len(packet) - 1))
            packet[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del packet[draw(st.integers(0, len(packet))):]
        elif kind == "junk":
            packet += draw(st.binary(max_size=64))
        elif len(packet) >= 12:   # lie in a section count
            at = draw(st.sampled_from([4, 6, 8, 10]))
            packet[at:at + 2] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    return bytes(packet)


packets = st.one_of(st.binary(max_size=600), queries())


def _udp_limit(data: bytes) -> int:
    request = DNSRecord.parse(data)
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, int(rr.rclass))
    return 512


def _check_reply(data: bytes, reply: bytes | None, *, tcp: bool) -> None:
    if reply is None:
        return
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == struct.unpack("!H", data[:2])[0]
    assert parsed.header.qr == 1
    assert len(reply) <= (0xFFFF if tcp else _udp_limit(data))


@FUZZ
@given(data=packets)
def test_udp_replies_parse_and_fit(harness: _Harness, data: bytes) -> None:
    _check_reply(data, harness.reply(data, tcp=False), tcp=False)


@FUZZ
@given(data=packets)
def test_tcp_replies_parse_and_fit(harness: _Harness, data: bytes) -> None:
    _check_reply(data, harness.reply(data, tcp=True), tcp=True)


@FUZZ
@given(frames=st.lists(st.one_of(packets.map(lambda p: struct.pack("!H", len(p)) + p),
                                 st.binary(max_size=8)), max_size=4))
def test_tcp_stream_writes_only_whole_framed_replies(harness: _Harness,
                                                     frames: list[bytes]) -> None:
    for chunk in harness.serve_tcp(b"".join(frames)):
        (size,) = struct.unpack("!H", chunk[:2])
        assert size == len(chunk) - 2
        DNSRecord.parse(chunk[2:])


def test_a_reply_too_big_for_tcp_is_truncated_not_a_crash(harness: _Harness) -> None:
    table = Records()
    # ~16 bytes per A record: 4500 of them are well past 65535.
    table.replace_all(_Ep("appnet", f"huge-{i}", "huge", f"10.40.{i // 250}.{i % 250 + 2}")
                      for i in range(4500))
    server = harness.loop.run_until_complete(_Harness._make())
    server._records = table
    try:
        query = DNSRecord.question("huge", "A")
        raw = harness.loop.run_until_complete(
            server._reply(harness.listener, query.pack(), tcp=True))
        assert raw is not None and len(raw) <= 0xFFFF
        reply = DNSRecord.parse(raw)
        assert reply.header.id == query.header.id and reply.header.tc == 1
    finally:
        harness.loop.run_until_complete(server.close())
