"""The embedded DNS server: one resolver at 127.0.0.11:53 inside every container.

The agent creates one ``DnsServer`` with its ``Records`` table, then calls
``attach`` when a container's network is up and ``detach`` when it stops.
Queries are answered from the table (answers.py) or forwarded (upstream.py).

Design notes:
- Per container, one UDP socket and one TCP listener are bound to
  127.0.0.11:53 inside the container's netns (netns.py) and served from the
  agent's asyncio loop. 127.0.0.11 is Docker's address, so images and tools
  that special-case it keep working; binding it directly (with IP_FREEBIND, so
  the order against bringing ``lo`` up does not matter) avoids libnetwork's
  iptables DNAT to a random port.
- The listener, not the query, carries the scope: it knows which networks its
  container is attached to, and only names on those networks resolve.
- A listener's failure never reaches the loop or another container: every
  query runs in its own task and ends in a reply or silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field

from dnslib import RCODE, DNSError, DNSRecord

from agent.dns.answers import answer, failure, pack_udp, udp_limit
from agent.dns.errors import NetnsError, ResolverBusy
from agent.dns.records import Records
from agent.dns.upstream import Forwarder, Upstream, host_upstreams
from berth.netns import NetnsHandle, NetnsThread, netns_identity, open_netns

log = logging.getLogger(__name__)

RESOLVER_IP = "127.0.0.11"
RESOLVER_PORT = 53
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
_TCP_IDLE = 10.0
_MAX_INFLIGHT = 100
_TCP_MAX = 0xFFFF


@dataclass(eq=False)
class _Listener:
    container: str
    netns: NetnsHandle
    networks: frozenset[str]
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, listener: _Listener) -> None:
        self._server = server
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server._spawn(self._listener, self._server._serve_udp(self._listener, data, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("dns %s: udp error: %s", self._listener.container, exc)


class DnsServer:
    """Serves every attached container's 127.0.0.11 from one records table."""

    def __init__(
        self,
        records: Records,
        upstreams: Sequence[Upstream] | None = None,
        *,
        timeout: float = 1.0,
        tries: int = 2,
        max_inflight: int = _MAX_INFLIGHT,
    ) -> None:
        """``upstreams=None`` reads the agent's /etc/resolv.conf; ``()`` means none."""
        self._records = records
        chosen = host_upstreams() if upstreams is None else tuple(upstreams)
        self._forwarder = Forwarder(chosen, timeout=timeout, tries=tries)
        self._netns = NetnsThread()
        self._listeners: dict[str, _Listener] = {}
        self._lock = asyncio.Lock()
        self._inflight = 0
        self._max_inflight = max_inflight

    @property
    def upstreams(self) -> tuple[Upstream, ...]:
        return self._forwarder.upstreams

    def attached(self) -> dict[str, frozenset[str]]:
        """Attached containers and their networks, for the agent's reconcile diff."""
        return {name: lst.networks for name, lst in self._listeners.items()}

    async def attach(self, container: str, netns_path: str, networks: Iterable[str]) -> None:
        """Serve DNS inside ``container``'s netns, scoped to ``networks``.

        Idempotent: attaching again with the same netns only updates the
        networks; a different netns (the container was re-created) replaces
        the listener. Raises NetnsError or ResolverBusy and leaves nothing behind.
        """
        scope = frozenset(networks)
        async with self._lock:
            current = self._listeners.get(container)
            if current is not None:
                try:
                    same = current.netns.identity == netns_identity(netns_path)
                except NetnsError:
                    # The netns is gone: the container is, too.
                    self._close_listener(self._listeners.pop(container))
                    raise
                if same:
                    current.networks = scope
                    return
                self._close_listener(self._listeners.pop(container))
            self._listeners[container] = await self._open_listener(container, netns_path, scope)

    async def detach(self, container: str) -> None:
        """Stop serving ``container``; a no-op if it is not attached."""
        async with self._lock:
            listener = self._listeners.pop(container, None)
            if listener is not None:
                self._close_listener(listener)

    async def close(self) -> None:
        """Detach everything and stop the netns thread."""
        async with self._lock:
            for listener in self._listeners.values():
                self._close_listener(listener)
            self._listeners.clear()
        await asyncio.to_thread(self._netns.close)

    async def _open_listener(self, container: str, path: str, scope: frozenset[str]) -> _Listener:
        handle = open_netns(path)
        listener = _Listener(container, handle, scope)
        try:
            udp_sock, tcp_sock = await self._netns.run(handle, _bind_resolver, _close_pair)
        except BaseException:
            handle.close()
            raise
        loop = asyncio.get_running_loop()
        try:
            listener.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, listener), sock=udp_sock
            )
            listener.tcp = await asyncio.start_server(
                lambda r, w: self._serve_tcp(listener, r, w), sock=tcp_sock
            )
        except BaseException:
            _close_pair((udp_sock, tcp_sock))
            self._close_listener(listener)
            raise
        log.info("dns: serving %s:%d for %s on %s", RESOLVER_IP, RESOLVER_PORT, container,
                 sorted(scope))
        return listener

    def _close_listener(self, listener: _Listener) -> None:
        if listener.udp is not None:
            listener.udp.close()
        if listener.tcp is not None:
            listener.tcp.close()
        for writer in list(listener.writers):
            writer.close()
        for task in list(listener.tasks):
            task.cancel()
        listener.netns.close()

    def _spawn(self, listener: _Listener, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        listener.tasks.add(task)
        task.add_done_callback(listener.tasks.discard)

    async def _serve_udp(self, listener: _Listener, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self._reply(listener, data, tcp=False)
        if reply is not None and listener.udp is not None and not listener.udp.is_closing():
            listener.udp.sendto(reply, addr)

    async def _serve_tcp(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        listener.writers.add(writer)
        try:
            while True:
                async with asyncio.timeout(_TCP_IDLE):
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(size)
                reply = await self._reply(listener, data, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or idled out; nothing to tell it
        finally:
            listener.writers.discard(writer)
            writer.close()

    async def _reply(self, listener: _Listener, data: bytes, *, tcp: bool) -> bytes | None:
        """The packed reply to one raw query, or ``None`` to stay silent."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None  # not DNS; answering garbage only helps reflection
        try:
            reply = answer(request, self._records, listener.networks)
            if reply is None:
                return await self._forward(listener, request, data, tcp=tcp)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One bad query must not take the container's resolver down.
            log.exception("dns %s: failed to answer %s", listener.container, request.q.qname)
            reply = failure(request, RCODE.SERVFAIL)
        # Over TCP the 2-byte length prefix caps a reply at 64 KiB: a service with
        # thousands of replicas is truncated (TC set) rather than failing to frame.
        return pack_udp(reply, _TCP_MAX if tcp else udp_limit(request))

    async def _forward(
        self, listener: _Listener, request: DNSRecord, data: bytes, *, tcp: bool
    ) -> bytes:
        servfail = failure(request, RCODE.SERVFAIL)
        if not self._forwarder.upstreams or self._inflight >= self._max_inflight:
            return servfail.pack() if tcp else pack_udp(servfail, udp_limit(request))

        self._inflight += 1
        try:
            raw = await self._forwarder.forward(data, request.header.id, tcp=tcp)
        finally:
            self._inflight -= 1
        if raw is None:
            return servfail.pack() if tcp else pack_udp(servfail, udp_limit(request))
        return raw


def _bind_resolver() -> tuple[socket.socket, socket.socket]:
    """Runs inside the container netns: bind UDP and TCP 127.0.0.11:53."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for sock in (udp, tcp):
            sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
            sock.setblocking(False)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((RESOLVER_IP, RESOLVER_PORT))
        tcp.bind((RESOLVER_IP, RESOLVER_PORT))
        tcp.listen(64)
    except OSError as exc:
        _close_pair((udp, tcp))
        if exc.errno == errno.EADDRINUSE:
            raise ResolverBusy(f"{RESOLVER_IP}:{RESOLVER_PORT} is already in use") from exc
        raise NetnsError(f"cannot bind {RESOLVER_IP}:{RESOLVER_PORT}: {exc}") from exc
    return udp, tcp


def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in pair:
        with contextlib.suppress(OSError):
            sock.close()
