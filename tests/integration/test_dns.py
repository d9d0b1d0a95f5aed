"""The embedded resolver, queried by real clients (dig, busybox nslookup) from
inside network namespaces this test creates (bt-dns-*), as a container would."""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from agent.dns import DnsServer, NetnsError, Records, ResolverBusy, Upstream
from berth.keyspace import ContainerName, NetworkName
from tests import needs

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs() -> None:
    needs.root()
    needs.tool("dig", "dnsutils")

MakeNetns = Callable[[], str]
MakeServer = Callable[..., DnsServer]

# A tiny upstream resolver on this machine's loopback, in the test's (the "agent's")
# own netns: reachable from the agent, not from inside any container netns.
UPSTREAM = """
import sys
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

class Resolver(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        if str(request.q.qname).lower() == "ext.example.":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.7"), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply

quiet = DNSLogger(logf=lambda _: None)
for tcp in (False, True):
    DNSServer(Resolver(), address="127.0.0.1", port=int(sys.argv[1]), tcp=tcp,
              logger=quiet).start_thread()
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class Dig:
    status: str | None          # None: no reply at all (timeout)
    answers: list[str]          # rdata of the answer section, sorted


def _path(ns: str) -> str:
    return f"/run/netns/{ns}"


async def dig(ns: str, name: str, qtype: str = "A", *flags: str) -> Dig:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={_path(ns)}", "dig", "@127.0.0.11", "+tries=1", "+time=4",
        "+noall", "+comments", "+answer", *flags, name, qtype,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    async with asyncio.timeout(20):
        out, _ = await proc.communicate()
    text = out.decode()
    status = re.search(r"status: (\w+)", text)
    answers = [
        line.split()[-1] for line in text.splitlines()
        if line and not line.startswith(";") and len(line.split()) >= 5
    ]
    return Dig(status.group(1) if status else None, sorted(answers))


@pytest.fixture
def netns() -> Iterator[MakeNetns]:
    made: list[str] = []

    def make() -> str:
        name = f"bt-dns-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def records() -> Records:
    table = Records()
    table.set_endpoint(NetworkName("appnet"), ContainerName("web-1"), "web", "10.42.0.2",
                       ["frontend"])
    table.set_endpoint(NetworkName("appnet"), ContainerName("web-2"), "web", "10.42.0.3")
    table.set_endpoint(NetworkName("dbnet"), ContainerName("db-1"), "db", "10.43.0.2")
    return table


@pytest.fixture
async def servers() -> AsyncIterator[MakeServer]:
    made: list[DnsServer] = []

    def make(records: Records, upstreams: tuple[Upstream, ...] = ()) -> DnsServer:
        server = DnsServer(records, upstreams)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            await server.close()


async def test_names_resolve_only_on_attached_networks(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app, db = netns(), netns()
    server = servers(records)
    await server.attach("client-a", _path(app), {"appnet"})
    await server.attach("client-b", _path(db), {"dbnet"})

    assert await dig(app, "web-2") == Dig("NOERROR", ["10.42.0.3"])
    assert await dig(app, "web") == Dig("NOERROR", ["10.42.0.2", "10.42.0.3"])
    assert await dig(app, "FRONTEND.") == Dig("NOERROR", ["10.42.0.2"])
    assert await dig(app, "web", "AAAA") == Dig("NOERROR", [])
    assert await dig(app, "db") == Dig("NXDOMAIN", [])
    assert await dig(db, "db-1") == Dig("NOERROR", ["10.43.0.2"])
    assert await dig(db, "web") == Dig("NXDOMAIN", [])
    assert await dig(app, "web", "A", "+tcp") == Dig("NOERROR", ["10.42.0.2", "10.42.0.3"])
    assert await dig(app, "10.42.0.3", "PTR", "-x") == Dig("NOERROR", ["web-2."])


async def test_busybox_nslookup_resolves_container_name(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app = netns()
    await servers(records).attach("client", _path(app), {"appnet"})
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={_path(app)}", "busybox", "nslookup", "web-1", "127.0.0.11",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    async with asyncio.timeout(20):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert "10.42.0.2" in out.decode()


async def test_removed_endpoint_stops_resolving(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app = netns()
    await servers(records).attach("client", _path(app), {"appnet"})
    assert await dig(app, "web-2") == Dig("NOERROR", ["10.42.0.3"])

    records.remove_endpoint(NetworkName("appnet"), ContainerName("web-2"))

    assert await dig(app, "web-2") == Dig("SERVFAIL", [])   # unknown now, no upstream
    assert await dig(app, "web") == Dig("NOERROR", ["10.42.0.2"])


async def test_reattach_updates_networks(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app = netns()
    server = servers(records)
    await server.attach("client", _path(app), {"appnet"})
    await server.attach("client", _path(app), {"dbnet"})
    assert server.attached() == {"client": frozenset({"dbnet"})}
    assert await dig(app, "db") == Dig("NOERROR", ["10.43.0.2"])
    assert await dig(app, "web") == Dig("NXDOMAIN", [])


async def test_unknown_name_without_upstream_is_servfail(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app = netns()
    await servers(records).attach("client", _path(app), {"appnet"})
    assert await dig(app, "example.org") == Dig("SERVFAIL", [])
    assert await dig(app, "example.org", "A", "+tcp") == Dig("SERVFAIL", [])


def _free_port() -> int:
    import socket

    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = int(tcp.getsockname()[1])
        udp.bind(("127.0.0.1", port))
        return port


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[], Awaitable[int]]]:
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> int:
        port = _free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", UPSTREAM, str(port),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        assert line == b"ready\n"
        return port

    try:
        yield start
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_unknown_names_are_forwarded_upstream_from_the_agents_netns(
    netns: MakeNetns, servers: MakeServer, records: Records,
    upstream: Callable[[], Awaitable[int]],
) -> None:
    # The container netns has no route anywhere; only the agent's netns reaches the
    # upstream, so an answer proves the forward left from the agent's side.
    app = netns()
    port = await upstream()
    server = servers(records, (Upstream("127.0.0.1", port),))
    await server.attach("client", _path(app), {"appnet"})

    assert await dig(app, "ext.example") == Dig("NOERROR", ["192.0.2.7"])
    assert await dig(app, "ext.example", "A", "+tcp") == Dig("NOERROR", ["192.0.2.7"])
    assert await dig(app, "missing.example") == Dig("NXDOMAIN", [])
    # Local names still win, and out-of-scope names never reach the upstream.
    assert await dig(app, "web-1") == Dig("NOERROR", ["10.42.0.2"])
    assert await dig(app, "db") == Dig("NXDOMAIN", [])


async def test_unreachable_upstream_fails_with_servfail(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app = netns()
    # Nothing listens on that loopback port: each try is refused at once.
    server = servers(records, (Upstream("127.0.0.1", _free_port()),))
    await server.attach("client", _path(app), {"appnet"})
    assert await dig(app, "ext.example") == Dig("SERVFAIL", [])


async def test_second_resolver_in_same_netns_is_busy(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    app = netns()
    await servers(records).attach("client", _path(app), {"appnet"})
    other = servers(records)
    with pytest.raises(ResolverBusy):
        await other.attach("client", _path(app), {"appnet"})
    assert other.attached() == {}


async def test_missing_netns_is_an_error_and_leaves_nothing(
    servers: MakeServer, records: Records
) -> None:
    server = servers(records)
    with pytest.raises(NetnsError):
        await server.attach("ghost", "/run/netns/bt-dns-does-not-exist", {"appnet"})
    assert server.attached() == {}


async def test_survives_netns_deletion(
    netns: MakeNetns, servers: MakeServer, records: Records
) -> None:
    gone, stays = netns(), netns()
    server = servers(records)
    await server.attach("gone", _path(gone), {"appnet"})
    await server.attach("stays", _path(stays), {"appnet"})
    deleted = await asyncio.create_subprocess_exec("ip", "netns", "del", gone)
    assert await deleted.wait() == 0

    with pytest.raises(NetnsError):   # re-attach finds the path gone: detached
        await server.attach("gone", _path(gone), {"appnet"})
    assert set(server.attached()) == {"stays"}
    await server.detach("gone")       # idempotent
    assert await dig(stays, "web-1") == Dig("NOERROR", ["10.42.0.2"])
