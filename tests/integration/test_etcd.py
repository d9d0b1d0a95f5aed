"""berth.etcd against a real etcd: KV, transactions, leases, watches, compaction, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Protocol

import pytest

from berth.errors import PermanentError, TemporaryError
from berth.etcd import (
    Compacted,
    DeleteEvent,
    Etcd3Client,
    EtcdError,
    EtcdUnavailable,
    LeaseLost,
    Listing,
    PutEvent,
    WatchEvent,
    txn,
)

pytestmark = pytest.mark.integration


class EtcdServer(Protocol):
    """What conftest's etcd_server / etcd_factory hand out (conftest is not importable)."""

    endpoint: str

    def start(self) -> None: ...
    def stop(self) -> None: ...


class EtcdTls(Protocol):
    ca: Path
    client_cert: Path | None
    client_key: Path | None


async def take(
    events: AsyncGenerator[WatchEvent, None], n: int, within: float = 10.0
) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async with asyncio.timeout(within):
        async for event in events:
            out.append(event)
            if len(out) == n:
                break
    return out


async def wait_gone(etcd: Etcd3Client, key: str, within: float) -> float:
    """Poll until ``key`` is gone; return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(within):
        while (await etcd.get(key))[0] is not None:  # noqa: ASYNC110 - polling etcd, not a flag
            await asyncio.sleep(0.1)
    return loop.time() - start


def summary(events: list[WatchEvent]) -> list[tuple[str, str, bytes | None]]:
    out: list[tuple[str, str, bytes | None]] = []
    for e in events:
        if isinstance(e, PutEvent):
            out.append(("put", e.key, e.value))
        elif isinstance(e, DeleteEvent):
            out.append(("delete", e.key, None))
        else:
            out.append(("compacted", "", None))
    return out


# ---- KV ----


async def test_put_get_and_meta(etcd: Etcd3Client) -> None:
    rev1 = await etcd.put("/t/a", b"one")
    rev2 = await etcd.put("/t/a", "two")  # str values are stored as UTF-8
    assert rev2 == rev1 + 1
    value, meta = await etcd.get("/t/a")
    assert value == b"two"
    assert meta is not None
    assert (meta.key, meta.create_revision, meta.mod_revision, meta.version, meta.lease) == (
        "/t/a",
        rev1,
        rev2,
        2,
        0,
    )
    assert await etcd.get("/t/missing") == (None, None)


async def test_get_prefix_is_sorted_and_bounded(etcd: Etcd3Client) -> None:
    for key in ["/t/b", "/t/a", "/t/c/x", "/t0", "/s", "/t/\u00e9"]:
        last = await etcd.put(key, key.encode())
    listing = await etcd.get_prefix("/t/")
    assert [meta.key for _, meta in listing.items] == ["/t/a", "/t/b", "/t/c/x", "/t/\u00e9"]
    assert listing.items[0][0] == b"/t/a"
    assert listing.revision == last
    assert (await etcd.get_prefix("/nothing/")).items == ()


async def test_delete_and_delete_prefix(etcd: Etcd3Client) -> None:
    for key in ["/d/1", "/d/2", "/d/3/x", "/d0"]:
        await etcd.put(key, b"x")
    assert await etcd.delete("/d/1") is True
    assert await etcd.delete("/d/1") is False
    assert await etcd.delete_prefix("/d/") == 2
    assert (await etcd.get_prefix("/d/")).items == ()
    assert (await etcd.get("/d0"))[0] == b"x"  # outside the prefix, untouched


async def test_status_reports_server(etcd: Etcd3Client) -> None:
    status = await etcd.status()
    assert str(status["version"]).startswith("3.")
    assert status["leader"] == status["member_id"]


async def test_bad_request_is_permanent_error(etcd: Etcd3Client) -> None:
    with pytest.raises(EtcdError, match="key is not provided") as info:
        await etcd.put("", b"x")
    assert isinstance(info.value, PermanentError)


async def test_unreachable_etcd_is_temporary_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        port = sock.getsockname()[1]
        async with Etcd3Client(f"127.0.0.1:{port}", timeout=1.0) as client:
            with pytest.raises(EtcdUnavailable) as info:
                await client.get("/x")
    assert isinstance(info.value, TemporaryError)


# ---- transactions ----


async def test_create_if_absent_only_once(etcd: Etcd3Client) -> None:
    async def claim(owner: bytes) -> tuple[bool, list[Listing | None]]:
        return await etcd.transaction(
            compare=[txn.version("/ipam/n/10.0.0.2") == 0],
            success=[txn.put("/ipam/n/10.0.0.2", owner)],
            failure=[txn.get("/ipam/n/10.0.0.2")],
        )

    ok, responses = await claim(b"web-1")
    assert ok is True
    assert responses == [None]
    ok, responses = await claim(b"web-2")
    assert ok is False
    listing = responses[0]
    assert isinstance(listing, Listing)
    assert [v for v, _ in listing.items] == [b"web-1"]
    assert listing.revision > 0
    assert (await etcd.get("/ipam/n/10.0.0.2"))[0] == b"web-1"


async def test_mod_revision_fence_and_branches(etcd: Etcd3Client) -> None:
    rev = await etcd.put("/f/spec", b"v1")
    await etcd.put("/f/other/1", b"a")
    await etcd.put("/f/other/2", b"b")
    c = etcd.transactions  # python-etcd3 spelling
    ok, responses = await etcd.transaction(
        compare=[c.mod("/f/spec") == rev, c.value("/f/spec") == b"v1", c.create("/f/spec") == rev],
        success=[c.put("/f/spec", b"v2"), c.delete_prefix("/f/other/"), c.get_prefix("/f/")],
        failure=[],
    )
    assert ok is True
    assert responses[:2] == [None, None]
    after = responses[2]
    assert isinstance(after, Listing)
    assert [(m.key, v) for v, m in after.items] == [("/f/spec", b"v2")]
    # The same fence now fails: someone (us) wrote since ``rev``.
    ok, responses = await etcd.transaction(
        compare=[c.mod("/f/spec") == rev],
        success=[c.delete("/f/spec")],
        failure=[c.get("/f/spec")],
    )
    assert ok is False
    assert (await etcd.get("/f/spec"))[0] == b"v2"


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: txn.version("/o/k") != 0, True),
        (lambda: txn.version("/o/k") > 1, True),
        (lambda: txn.version("/o/k") < 2, False),
        (lambda: txn.value("/o/k") != b"b", False),
        (lambda: txn.value("/o/k") > b"a", True),
        (lambda: txn.lease("/o/k") == 0, True),
        (lambda: txn.mod("/o/k") < 1, False),
    ],
    ids=["version-ne", "version-gt", "version-lt", "value-ne", "value-gt", "lease-eq", "mod-lt"],
)
async def test_compare_operators(
    etcd: Etcd3Client, build: Callable[[], txn.Compare], expected: bool
) -> None:
    await etcd.put("/o/k", b"a")
    await etcd.put("/o/k", b"b")  # version 2, value b"b"
    ok, _ = await etcd.transaction([build()], [], [])
    assert ok is expected


# ---- leases ----


async def test_revoke_deletes_attached_keys(etcd: Etcd3Client) -> None:
    lease = await etcd.lease(30)
    await etcd.put("/nodes/h1", b"rec", lease=lease)
    await etcd.put("/nodes/h1/extra", b"rec", lease=lease.id)
    _, meta = await etcd.get("/nodes/h1")
    assert meta is not None and meta.lease == lease.id
    ttl, keys = await lease.time_to_live()
    assert 0 < ttl <= 30
    assert sorted(keys) == ["/nodes/h1", "/nodes/h1/extra"]
    await lease.revoke()
    assert (await etcd.get_prefix("/nodes/")).items == ()
    assert await lease.refresh() == 0


async def test_keepalive_holds_key_past_ttl_then_expiry_removes_it(etcd: Etcd3Client) -> None:
    lease = await etcd.lease(2)
    await etcd.put("/nodes/h2", b"rec", lease=lease)
    task = asyncio.create_task(lease.keepalive())
    await asyncio.sleep(4.5)  # more than twice the TTL
    assert not task.done()
    assert (await etcd.get("/nodes/h2"))[0] == b"rec"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    took = await wait_gone(etcd, "/nodes/h2", within=8)
    assert took > 0.5  # it was still alive when keepalive stopped
    assert (await lease.time_to_live())[0] == -1


async def test_key_expires_without_keepalive(etcd: Etcd3Client) -> None:
    lease = await etcd.lease(2)
    await etcd.put("/nodes/h3", b"rec", lease=lease)
    assert await lease.refresh() > 0
    await wait_gone(etcd, "/nodes/h3", within=8)


async def test_keepalive_raises_lease_lost_after_revoke(etcd: Etcd3Client) -> None:
    lease = await etcd.lease(3)
    task = asyncio.create_task(lease.keepalive())
    await asyncio.sleep(0.3)
    await lease.revoke()
    with pytest.raises(LeaseLost, match=f"{lease.id:x}"):
        async with asyncio.timeout(5):
            await task


async def test_keepalive_rides_out_a_short_etcd_restart(etcd_server: EtcdServer) -> None:
    async with Etcd3Client(etcd_server.endpoint, timeout=1.0) as etcd:
        lease = await etcd.lease(5)
        await etcd.put("/nodes/h4", b"rec", lease=lease)
        task = asyncio.create_task(lease.keepalive())
        await asyncio.sleep(0.5)
        etcd_server.stop()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(etcd_server.start)
        await asyncio.sleep(6)  # past the TTL: only a reconnected keepalive explains the key
        assert not task.done()
        assert (await etcd.get("/nodes/h4"))[0] == b"rec"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_keepalive_gives_up_when_etcd_is_gone_past_ttl(etcd_server: EtcdServer) -> None:
    async with Etcd3Client(etcd_server.endpoint, timeout=1.0) as etcd:
        lease = await etcd.lease(2)
        task = asyncio.create_task(lease.keepalive())
        await asyncio.sleep(0.3)
        etcd_server.stop()
        with pytest.raises(LeaseLost, match="unreachable"):
            async with asyncio.timeout(6):
                await task


# ---- watch ----


async def test_watch_delivers_puts_and_deletes_in_order(etcd: Etcd3Client) -> None:
    start = await etcd.put("/unrelated", b"") + 1
    async with contextlib.aclosing(etcd.watch_prefix("/w/", start_revision=start)) as events:
        collected = asyncio.create_task(take(events, 5))
        await etcd.put("/w/a", b"1")
        await etcd.put("/outside", b"x")
        await etcd.put("/w/b", b"2")
        await etcd.delete("/w/a")
        await etcd.transaction([], [txn.put("/w/c", b"3"), txn.delete("/w/b")], [])
        got = await collected
    assert summary(got) == [
        ("put", "/w/a", b"1"),
        ("put", "/w/b", b"2"),
        ("delete", "/w/a", None),
        ("put", "/w/c", b"3"),
        ("delete", "/w/b", None),
    ]
    revs = [e.meta.mod_revision for e in got if not isinstance(e, Compacted)]
    assert revs == sorted(revs) and revs[-1] == revs[-2]  # the txn wrote both at one revision


async def test_watch_from_now_sees_only_later_writes(etcd: Etcd3Client) -> None:
    await etcd.put("/n/old", b"0")
    async with contextlib.aclosing(etcd.watch_prefix("/n/")) as events:
        first = asyncio.create_task(take(events, 1))
        # "From now" starts wherever etcd creates the watcher, which the caller cannot
        # see: write until the watch reports one. Whatever it reports first must be a
        # later write, never the key that existed before.
        count = 0
        async with asyncio.timeout(10):
            while not first.done():
                count += 1
                await etcd.put("/n/new", str(count))
                await asyncio.wait([first], timeout=0.05)
        (event,) = await first
    assert isinstance(event, PutEvent) and event.meta.key == "/n/new"


async def test_watch_replays_history_from_start_revision(etcd: Etcd3Client) -> None:
    start = await etcd.put("/h/a", b"1")
    await etcd.put("/h/b", b"2")
    await etcd.delete("/h/a")
    async with contextlib.aclosing(etcd.watch_prefix("/h/", start_revision=start + 1)) as events:
        got = await take(events, 2)
    assert summary(got) == [("put", "/h/b", b"2"), ("delete", "/h/a", None)]


async def test_watch_resumes_after_etcd_restart(etcd_server: EtcdServer) -> None:
    async with Etcd3Client(etcd_server.endpoint, timeout=2.0) as etcd:
        start = await etcd.put("/r/a", b"1")
        async with contextlib.aclosing(etcd.watch_prefix("/r/", start_revision=start)) as events:
            assert summary(await take(events, 1)) == [("put", "/r/a", b"1")]
            pending = asyncio.create_task(take(events, 2, within=30))
            etcd_server.stop()
            await asyncio.sleep(1.5)  # the watch keeps retrying while etcd is down
            assert not pending.done()
            await asyncio.to_thread(etcd_server.start)
            await etcd.put("/r/b", b"2")
            await etcd.delete("/r/a")
            got = await pending
    # Exactly the writes after the outage: nothing lost, nothing repeated.
    assert summary(got) == [("put", "/r/b", b"2"), ("delete", "/r/a", None)]


async def test_watch_from_compacted_revision_relists_then_continues(etcd: Etcd3Client) -> None:
    first = await etcd.put("/c/a", b"1")
    await etcd.put("/c/a", b"2")
    await etcd.put("/c/b", b"1")
    await etcd.delete("/c/b")
    now = await etcd.put("/c/d", b"1")
    await etcd.compact(now)
    with pytest.raises(EtcdError, match="compacted"):
        await etcd.compact(first)  # history before ``now`` is gone
    async with contextlib.aclosing(etcd.watch_prefix("/c/", start_revision=first)) as events:
        (compacted,) = await take(events, 1)
        assert isinstance(compacted, Compacted)
        assert [(m.key, v) for v, m in compacted.listing.items] == [
            ("/c/a", b"2"),
            ("/c/d", b"1"),
        ]
        assert compacted.listing.revision == now
        live = asyncio.create_task(take(events, 1))
        await etcd.put("/c/e", b"live")
        assert summary(await live) == [("put", "/c/e", b"live")]


# ---- TLS ----


async def test_tls_with_client_certificate(
    etcd_factory: Callable[..., EtcdServer], etcd_tls: EtcdTls
) -> None:
    tls = etcd_tls
    server = etcd_factory(tls=tls)
    assert tls.client_cert is not None and tls.client_key is not None
    async with Etcd3Client(
        server.endpoint,
        ca_cert=str(tls.ca),
        cert_cert=str(tls.client_cert),
        cert_key=str(tls.client_key),
    ) as etcd:
        await etcd.put("/tls/k", b"secret")
        assert (await etcd.get("/tls/k"))[0] == b"secret"
    # Without TLS, or without a client certificate, etcd does not serve us.
    async with Etcd3Client(server.endpoint, timeout=2.0) as plain:
        with pytest.raises(EtcdUnavailable):
            await plain.get("/tls/k")
    async with Etcd3Client(server.endpoint, ca_cert=str(tls.ca), timeout=2.0) as anonymous:
        with pytest.raises(EtcdUnavailable):
            await anonymous.get("/tls/k")
