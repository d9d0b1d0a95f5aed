"""``clusterctl image load``: stream an archive to the controller in 1 MiB frames.

An archive over the controller's limit (berth.imagelimits.MAX_ARCHIVE_BYTES) is
refused here before any byte is sent; the controller enforces the same bound.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from berth.imagelimits import MAX_ARCHIVE_BYTES
from clusterctl.client import CtlError, Where, connect
from protos import common_pb2

CHUNK = 1 << 20


async def _frames(path: Path) -> AsyncIterator[common_pb2.ImageChunk]:
    yield common_pb2.ImageChunk(filename=path.name)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield common_pb2.ImageChunk(data=chunk)


async def load_image(controller: Where, path: Path) -> list[str]:
    size = await asyncio.to_thread(os.path.getsize, path)
    if size > MAX_ARCHIVE_BYTES:
        raise CtlError(f"the archive is {size} bytes; the limit is {MAX_ARCHIVE_BYTES}")
    async with connect(controller) as stub:
        resp = await stub.ImageLoad(_frames(path))
    return list(resp.refs)
