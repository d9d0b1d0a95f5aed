"""Image archives held by the controller: load (store, push to every node, record) and pull.

Called by server.py for ImageLoad and ImagePull. Archives (docker-save or OCI
layout tars) are stored content-addressed as ``<state-dir>/images/<hex>.tar``
(written to a temporary file, then renamed; the directory is root-only, 0700).
etcd only gets a small ImageRecord per reference: image bytes never go through etcd
(1.5 MiB limit). Every path is built from a parsed ``berth.digest.Digest`` and
checked to stay inside the images directory; ImagePull's ``ref`` is parsed strictly.

A load is atomic across the cluster: the archive is pushed to every node that is
Ready when the load starts, and the ImageRecords are written only once all of them
accepted it. If one refused or could not be reached, nodes that accepted are rolled
back (ImageRemove untags what they loaded; a tag they had before is fetched again on
demand from the record still in etcd), no record is written, and the archive is
deleted unless an existing record names the same digest. Nodes that join later pull
by reference with ImagePull.

File I/O, hashing and the tar scan run in worker threads (asyncio.to_thread): a
large archive must not stall the scheduler and every other RPC on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import grpc
from pydantic import ValidationError

from berth import keyspace
from berth.digest import Digest, store_path
from berth.errors import NotFoundError, PermanentError, UserError
from berth.etcd import KeyValue, txn
from berth.imagelimits import MAX_ARCHIVE_BYTES
from berth.records import ImageRecord, NodeRecord
from controller.errors import AgentRejected, NodeUnavailable
from controller.imagerefs import archive_refs, normalise_ref
from controller.proxy import PLAINTEXT, AgentDialer, agent_stub
from protos import agent_pb2, common_pb2

__all__ = ["ImageStore", "archive_refs", "normalise_ref", "read_chunks"]

log = logging.getLogger(__name__)
CHUNK = 1 << 20
PUSH_TIMEOUT = 600.0
ROLLBACK_TIMEOUT = 30.0
MAX_REF = 512
DIR_MODE = 0o700


@dataclass(frozen=True)
class Pushed:
    node: NodeRecord
    refs: tuple[str, ...]     # as the agent named them, for ImageRemove


Offload = Callable[..., Awaitable[Any]]


class ImageStore:
    """``offload`` runs blocking work (file I/O, hashing, the tar scan) off the event loop;
    asyncio.to_thread, unless a test hands in one that records what it was given."""

    def __init__(self, etcd: KeyValue, state_dir: Path,
                 max_archive: int = MAX_ARCHIVE_BYTES,
                 offload: Offload = asyncio.to_thread,
                 dialer: AgentDialer = PLAINTEXT) -> None:
        self._etcd = etcd
        self._dialer = dialer
        self._dir = state_dir / "images"
        self._max_archive = max_archive
        self._offload = offload
        self._ensure_dir()

    def _ensure_dir(self) -> None:
        """Root-only, also for an existing install (chmod, not only mkdir's mode)."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(self._dir, DIR_MODE)

    def path(self, digest: Digest) -> Path:
        return store_path(self._dir, digest, ".tar")

    async def load(self, frames: AsyncIterator[common_pb2.ImageChunk]) -> tuple[list[str], Digest]:
        """Store, push to every Ready node, then record; all or nothing. Returns (refs, digest)."""
        nodes = await self._ready_nodes()
        try:
            digest, size = await self.receive(frames)
        except OSError as exc:   # disk full, read-only state dir: say so without a class name
            raise PermanentError(f"image load: cannot store the archive on the controller: "
                                 f"{exc.strerror or exc}") from exc
        try:
            refs = await self._offload(archive_refs, self.path(digest))
            if not refs:
                raise UserError("image load: the archive names no image (no RepoTags in "
                                "manifest.json and no ref.name annotation in index.json)")
            await self._push_all(digest, nodes)
            await self._etcd.transaction([], [
                txn.put(keyspace.image(ref),
                        ImageRecord(ref=ref, digest=str(digest), size=size).dumps())
                for ref in refs])
        except BaseException:
            await asyncio.shield(self._forget(digest))
            raise
        return refs, digest

    async def _ready_nodes(self) -> list[NodeRecord]:
        listing = await self._etcd.get_prefix(keyspace.NODES)
        nodes = []
        for value, meta in listing.items:
            try:
                nodes.append(NodeRecord.loads(value))
            except ValidationError:
                # A poison pill: `get nodes` shows it Invalid; it cannot take images.
                log.warning("image load: skipping unreadable node record %s", meta.key)
        return nodes

    async def receive(self, frames: AsyncIterator[common_pb2.ImageChunk]) -> tuple[Digest, int]:
        """Store a streamed archive, at most ``max_archive`` bytes; returns (digest, size)."""
        fd, tmp_name = await self._offload(self._incoming)
        tmp = Path(tmp_name)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for frame in frames:
                    if frame.WhichOneof("frame") == "data":
                        size += len(frame.data)
                        if size > self._max_archive:
                            raise UserError(f"image load: the archive is larger than the "
                                            f"limit of {self._max_archive} bytes")
                        await self._offload(_append, out, digest, frame.data)
            if size == 0:
                raise UserError("image load: the archive is empty")
            name = Digest(digest.hexdigest())
            await self._offload(os.replace, tmp, self.path(name))
        finally:
            await self._offload(_discard, tmp)
        return name, size

    def _incoming(self) -> tuple[int, str]:
        self._ensure_dir()
        return tempfile.mkstemp(dir=self._dir, prefix=".incoming-", suffix=".tar")

    async def _forget(self, digest: Digest) -> None:
        """Delete an archive no ImageRecord names (a refused load leaves nothing behind)."""
        try:
            listing = await self._etcd.get_prefix(keyspace.IMAGES)
            if any(ImageRecord.loads(v).digest == str(digest) for v, _ in listing.items):
                return
            await self._offload(_discard, self.path(digest))
        except Exception:
            log.exception("image load: could not clean up archive %s", digest)

    async def find(self, ref: str) -> Path:
        """The stored archive for ``ref`` (a reference or a ``sha256:`` digest)."""
        if len(ref) > MAX_REF:
            raise UserError(f"image reference is longer than {MAX_REF} characters")
        if ref.startswith("sha256:"):
            path = self.path(Digest.parse(ref, "image pull: ref"))
        else:
            raw, _ = await self._etcd.get(keyspace.image(normalise_ref(ref)))
            if raw is None:
                raise NotFoundError(f'image "{ref}" not found on the controller')
            path = self.path(Digest.parse(ImageRecord.loads(raw).digest, f"image {ref}"))
        if not await self._offload(path.is_file):
            raise NotFoundError(f'image "{ref}": archive {path.name} missing on this controller')
        return path

    async def _push_all(self, digest: Digest, nodes: list[NodeRecord]) -> None:
        """Push to every node at once; on any failure untag it on those that accepted."""
        path = self.path(digest)
        results = await asyncio.gather(*(_push_one(path, node, self._dialer) for node in nodes),
                                       return_exceptions=True)
        accepted = [r for r in results if isinstance(r, Pushed)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            return
        await asyncio.shield(asyncio.gather(*(_rollback(p, self._dialer) for p in accepted),
                                            return_exceptions=True))
        first = failed[0]
        more = f" (and {len(failed) - 1} more nodes)" if len(failed) > 1 else ""
        message = f"{first}{more}; the image was not loaded on any node"
        if isinstance(first, AgentRejected):
            raise AgentRejected(message, first.grpc_code) from first
        if isinstance(first, NodeUnavailable):
            raise NodeUnavailable(message) from first
        raise first


def _append(out: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    digest.update(data)
    out.write(data)


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def read_chunks(path: Path) -> AsyncIterator[common_pb2.ImageChunk]:
    """The ImageChunk stream for a stored archive: its name, then its bytes."""
    yield common_pb2.ImageChunk(filename=path.name)
    with path.open("rb") as src:
        while chunk := await asyncio.to_thread(src.read, CHUNK):
            yield common_pb2.ImageChunk(data=chunk)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


async def _push_one(path: Path, node: NodeRecord, dialer: AgentDialer) -> Pushed:
    async with dialer.channel(node) as channel:
        stub = agent_stub(channel)
        try:
            resp = await stub.ImageLoad(read_chunks(path), timeout=PUSH_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise NodeUnavailable(f"image load: node {node.name}: agent at "
                                      f"{node.agent_addr} is unreachable: "
                                      f"{_one_line(exc.details())}") from exc
            raise AgentRejected(f"image load: node {node.name} rejected the image: "
                                f"{_one_line(exc.details())}", exc.code()) from exc
    return Pushed(node, tuple(resp.refs))


async def _rollback(pushed: Pushed, dialer: AgentDialer) -> None:
    """Untag what one node loaded; a failure is logged (the node re-pulls on demand)."""
    try:
        async with dialer.channel(pushed.node) as channel:
            await agent_stub(channel).ImageRemove(
                agent_pb2.ImageRemoveRequest(refs=list(pushed.refs)), timeout=ROLLBACK_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        log.warning("image load: rollback on node %s failed: %s", pushed.node.name,
                    _one_line(exc.details()))
