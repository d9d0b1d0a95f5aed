"""``clusterctl image load``: stream an archive to the controller in 1 MiB frames."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from clusterctl.client import connect
from protos import common_pb2

CHUNK = 1 << 20


async def _frames(path: Path) -> AsyncIterator[common_pb2.ImageChunk]:
    yield common_pb2.ImageChunk(filename=path.name)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield common_pb2.ImageChunk(data=chunk)


async def load_image(controller: str | None, path: Path) -> list[str]:
    async with connect(controller) as stub:
        resp = await stub.ImageLoad(_frames(path))
    return list(resp.refs)
