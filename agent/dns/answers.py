"""Turn one parsed DNS query into a reply from the records table, or say "forward".

Called by server.py for every query a container sends to 127.0.0.11. Pure:
dnslib packets in, dnslib packets out, no sockets. The rules, in order:

- Not a standard QUERY with exactly one question: NOTIMP / FORMERR.
- A name in the table on one of the container's networks: its A records with a
  2 s TTL (endpoints come and go with containers; clients must not cache long),
  and NOERROR with no records for AAAA or any other type (the name exists, it
  just has no such record; NXDOMAIN would make resolvers give up on A too).
- A name in the table only on networks the container is NOT attached to:
  NXDOMAIN, authoritative. Forwarding it would leak internal names upstream
  and make the answer depend on whether an upstream exists.
- PTR for a container IP in scope: its container names. Same scope rule.
- Anything else: ``None``, which means "forward to the upstream servers".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from dnslib import OPCODE, PTR, QTYPE, RCODE, RR, A, DNSRecord

from agent.dns.records import Records

TTL = 2
_UDP_MIN = 512
_ADDRESS_TYPES = frozenset({QTYPE.A, QTYPE.ANY})
_ARPA_V4 = ".in-addr.arpa"


def answer(request: DNSRecord, records: Records, networks: Collection[str]) -> DNSRecord | None:
    """The reply to ``request`` from the table, or ``None`` to forward it."""
    if request.header.opcode != OPCODE.QUERY:
        return failure(request, RCODE.NOTIMP)
    if len(request.questions) != 1:
        return failure(request, RCODE.FORMERR)
    question = request.q
    name = str(question.qname)
    if question.qtype == QTYPE.PTR:
        return _answer_ptr(request, records, networks)
    ips = records.lookup(name, networks)
    if ips:
        reply = request.reply(aa=1, ra=1)
        if question.qtype in _ADDRESS_TYPES:
            for ip in ips:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply
    if records.known(name):
        return failure(request, RCODE.NXDOMAIN, authoritative=True)
    return None


def _answer_ptr(
    request: DNSRecord, records: Records, networks: Collection[str]
) -> DNSRecord | None:
    ip = ptr_address(str(request.q.qname))
    if ip is None:
        return None
    names = records.reverse(ip, networks)
    if names:
        reply = request.reply(aa=1, ra=1)
        for name in names:
            reply.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=TTL))
        return reply
    if records.reverse_known(ip):
        return failure(request, RCODE.NXDOMAIN, authoritative=True)
    return None


def ptr_address(qname: str) -> str | None:
    """``4.3.2.1.in-addr.arpa.`` -> ``1.2.3.4``; ``None`` for anything else."""
    name = qname.lower().rstrip(".")
    if not name.endswith(_ARPA_V4):
        return None
    labels = name[: -len(_ARPA_V4)].split(".")
    if len(labels) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(labels))))
    except ValueError:
        return None


def failure(request: DNSRecord, rcode: int, *, authoritative: bool = False) -> DNSRecord:
    """An empty reply to ``request`` carrying ``rcode``."""
    reply = request.reply(aa=int(authoritative), ra=1)
    reply.header.rcode = rcode
    return reply


def udp_limit(request: DNSRecord) -> int:
    """The largest UDP reply the client accepts: 512, or its EDNS0 buffer size."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(_UDP_MIN, int(rr.rclass))
    return _UDP_MIN


def pack_udp(reply: DNSRecord, limit: int) -> bytes:
    """Pack ``reply``; if it does not fit, drop the records and set TC so the
    client retries over TCP (a service with many replicas can exceed 512 bytes)."""
    packet: bytes = reply.pack()
    if len(packet) <= limit:
        return packet
    reply.rr = []
    reply.auth = []
    reply.ar = []
    reply.header.tc = 1
    truncated: bytes = reply.pack()
    return truncated
