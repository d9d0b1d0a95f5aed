"""Forward queries the records table cannot answer to the host's upstream servers.

server.py owns one ``Forwarder``. Forwarded queries leave from the agent's own
network namespace (the host's), not the querying container's: an overlay-only
container has no route out and the host does. libnetwork's external DNS, run on
the host side, does the same for the same reason.

Design notes:
- Fail fast. One short timeout per try and two tries in total, spread across
  the servers; no upstream at all means the caller answers SERVFAIL at once.
  A resolver that waits 5 s per unreachable upstream makes every miss in the
  lab (which has no upstream) look like a hang.
- A fresh socket per try gives every forwarded query a new random source port,
  which is what makes off-path answer spoofing hard; replies must also come
  from the server queried (connected UDP) and carry the query's id.
- 127.x servers in the host's resolv.conf (systemd-resolved, dnsmasq) are
  skipped: from inside a container netns they are the container's own loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from dnslib import DNSError, DNSRecord

log = logging.getLogger(__name__)

RESOLV_CONF = "/etc/resolv.conf"
_MAX_MESSAGE = 65535


@dataclass(frozen=True)
class Upstream:
    """One upstream DNS server."""

    ip: str
    port: int = 53

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ipaddress.ip_address(self.ip).version == 6 else socket.AF_INET


def parse_resolv_conf(text: str) -> tuple[Upstream, ...]:
    """The usable ``nameserver`` lines of a resolv.conf, loopback excluded."""
    servers: list[Upstream] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            addr = ipaddress.ip_address(fields[1])
        except ValueError:
            continue
        if not addr.is_loopback:
            servers.append(Upstream(str(addr)))
    return tuple(servers)


def host_upstreams(path: str = RESOLV_CONF) -> tuple[Upstream, ...]:
    """Upstreams from the agent's resolv.conf; none if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_resolv_conf(f.read())
    except OSError as exc:
        log.warning("cannot read %s (%s): unknown names will get SERVFAIL", path, exc)
        return ()


class Forwarder:
    """Relays a raw query to the upstreams and returns the raw reply."""

    def __init__(
        self, upstreams: Sequence[Upstream], *, timeout: float = 1.0, tries: int = 2
    ) -> None:
        self.upstreams = tuple(upstreams)
        self._timeout = timeout
        self._tries = tries
        self._next = 0

    async def forward(self, packet: bytes, request_id: int, *, tcp: bool) -> bytes | None:
        """The first valid upstream reply, or ``None`` when every try failed."""
        for _ in range(self._tries if self.upstreams else 0):
            upstream = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            try:
                async with asyncio.timeout(self._timeout):
                    if tcp:
                        return await _exchange_tcp(packet, request_id, upstream)
                    return await _exchange_udp(packet, request_id, upstream)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.debug("upstream %s:%d failed: %r", upstream.ip, upstream.port, exc)
        return None


def _socket(family: int, kind: int) -> socket.socket:
    """A fresh non-blocking socket in the agent's own netns (a new source port per try)."""
    sock = socket.socket(family, kind)
    sock.setblocking(False)
    return sock


async def _exchange_udp(packet: bytes, request_id: int, upstream: Upstream) -> bytes:
    loop = asyncio.get_running_loop()
    sock = _socket(upstream.family, socket.SOCK_DGRAM)
    with sock:
        # Connecting a UDP socket is immediate and makes the kernel drop
        # datagrams from any other source.
        sock.connect((upstream.ip, upstream.port))
        await loop.sock_sendall(sock, packet)
        while True:
            data = await loop.sock_recv(sock, _MAX_MESSAGE)
            if _is_reply(data, request_id):
                return data


async def _exchange_tcp(packet: bytes, request_id: int, upstream: Upstream) -> bytes:
    loop = asyncio.get_running_loop()
    sock = _socket(upstream.family, socket.SOCK_STREAM)
    with sock:
        await loop.sock_connect(sock, (upstream.ip, upstream.port))
        await loop.sock_sendall(sock, struct.pack("!H", len(packet)) + packet)
        (size,) = struct.unpack("!H", await _recv_exactly(loop, sock, 2))
        data = await _recv_exactly(loop, sock, size)
    if not _is_reply(data, request_id):
        raise OSError(f"bad reply from {upstream.ip}:{upstream.port}")
    return data


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise asyncio.IncompleteReadError(buf, n)
        buf += chunk
    return buf


def _is_reply(data: bytes, request_id: int) -> bool:
    try:
        header = DNSRecord.parse(data).header
    except DNSError:
        return False
    return bool(header.id == request_id and header.qr == 1)
