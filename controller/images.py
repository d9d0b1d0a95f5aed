"""Image archives held by the controller: load (store + record + push) and pull.

Called by server.py for ImageLoad and ImagePull. Archives (docker-save or OCI
layout tars) are stored content-addressed as ``<state-dir>/images/<sha256>.tar``
(written to a temporary file, then renamed). etcd only gets a small
ImageRecord per reference: image bytes never go through etcd (1.5 MiB limit).
After storing, the archive is pushed to every Ready node's agent concurrently;
agents that join later pull it by reference with ImagePull.

File I/O, hashing and the tar scan run in worker threads (asyncio.to_thread): a
large archive must not stall the scheduler and every other RPC on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO

import grpc

from berth import keyspace
from berth.errors import NotFoundError, UserError
from berth.etcd import Etcd3Client, txn
from berth.records import ImageRecord, NodeRecord
from controller.errors import AgentRejected, NodeUnavailable
from controller.proxy import agent_stub
from protos import common_pb2

CHUNK = 1 << 20
PUSH_TIMEOUT = 600.0


class ImageStore:
    def __init__(self, etcd: Etcd3Client, state_dir: Path) -> None:
        self._etcd = etcd
        self._dir = state_dir / "images"

    def path(self, digest: str) -> Path:
        return self._dir / f"{digest.removeprefix('sha256:')}.tar"

    async def receive(self, frames: AsyncIterator[common_pb2.ImageChunk]) -> tuple[str, int]:
        """Store a streamed archive; returns (``sha256:<hex>``, size)."""
        fd, tmp_name = await asyncio.to_thread(self._incoming)
        tmp = Path(tmp_name)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for frame in frames:
                    if frame.WhichOneof("frame") == "data":
                        size += len(frame.data)
                        await asyncio.to_thread(_append, out, digest, frame.data)
            if size == 0:
                raise UserError("image load: the archive is empty")
            name = f"sha256:{digest.hexdigest()}"
            await asyncio.to_thread(os.replace, tmp, self.path(name))
        finally:
            await asyncio.to_thread(_discard, tmp)
        return name, size

    def _incoming(self) -> tuple[int, str]:
        self._dir.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=self._dir, prefix=".incoming-", suffix=".tar")

    async def record(self, digest: str, size: int) -> list[str]:
        """Write an ImageRecord for every reference the archive names."""
        refs = await asyncio.to_thread(archive_refs, self.path(digest))
        if not refs:
            raise UserError("image load: the archive names no image (no RepoTags in "
                            "manifest.json and no ref.name annotation in index.json)")
        await self._etcd.transaction([], [
            txn.put(keyspace.image(ref), ImageRecord(ref=ref, digest=digest, size=size).dumps())
            for ref in refs])
        return refs

    async def find(self, ref: str) -> Path:
        """The stored archive for ``ref`` (a reference or a ``sha256:`` digest)."""
        if ref.startswith("sha256:"):
            path = self.path(ref)
        else:
            raw, _ = await self._etcd.get(keyspace.image(normalise_ref(ref)))
            if raw is None:
                raise NotFoundError(f'image "{ref}" not found on the controller')
            path = self.path(ImageRecord.loads(raw).digest)
        if not await asyncio.to_thread(path.exists):
            raise NotFoundError(f'image "{ref}": archive {path.name} missing on this controller')
        return path

    async def push(self, digest: str, nodes: Iterable[NodeRecord]) -> None:
        """Send the archive to every node's agent at once; fail naming the node that refused."""
        path = self.path(digest)
        results = await asyncio.gather(*(_push_one(path, node) for node in nodes),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


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


async def _push_one(path: Path, node: NodeRecord) -> None:
    async with grpc.aio.insecure_channel(node.agent_addr) as channel:
        stub = agent_stub(channel)
        try:
            await stub.ImageLoad(read_chunks(path), timeout=PUSH_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise NodeUnavailable(f"image load: node {node.name}: agent at "
                                      f"{node.agent_addr} is unreachable: {exc.details()}") from exc
            raise AgentRejected(f"image load: node {node.name} rejected the image: "
                                f"{exc.details()}", exc.code()) from exc


def normalise_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; refs with a tag or digest are kept."""
    last = ref.rsplit("/", 1)[-1]
    return ref if (":" in last or "@" in ref) else f"{ref}:latest"


def archive_refs(path: Path) -> list[str]:
    """The image references a docker-save or OCI-layout tar names."""
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            if "manifest.json" in names:
                return _docker_refs(_read_json(tar, "manifest.json"))
            if "index.json" in names:
                return _oci_refs(_read_json(tar, "index.json"))
    except tarfile.ReadError as exc:
        raise UserError(
            "image load: not a tar archive (expected docker-save or OCI layout)"
        ) from exc
    except (tarfile.TarError, ValueError, KeyError) as exc:
        # tarfile's messages can span lines; the person gets one.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"image load: not a docker-save or OCI layout tar: {first}") from exc
    raise UserError("image load: not a docker-save or OCI layout tar "
                    "(neither manifest.json nor index.json found)")


def _read_json(tar: tarfile.TarFile, name: str) -> object:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file")
    return json.loads(member.read())


def _docker_refs(manifest: object) -> list[str]:
    if not isinstance(manifest, list):
        raise ValueError("manifest.json is not a list")
    refs = [tag for entry in manifest if isinstance(entry, dict)
            for tag in entry.get("RepoTags") or [] if isinstance(tag, str)]
    return sorted({normalise_ref(r) for r in refs})


def _oci_refs(index: object) -> list[str]:
    if not isinstance(index, dict):
        raise ValueError("index.json is not an object")
    refs = []
    for desc in index.get("manifests") or []:
        notes = desc.get("annotations") or {} if isinstance(desc, dict) else {}
        # containerd/docker write the full name separately; ref.name may be only a tag.
        name = (notes.get("io.containerd.image.name")
                or notes.get("org.opencontainers.image.ref.name"))
        if isinstance(name, str) and name:
            refs.append(normalise_ref(name))
    return sorted(set(refs))
