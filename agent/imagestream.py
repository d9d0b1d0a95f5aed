"""Loading an image archive that arrives as a stream of ``ImageChunk`` frames.

Used by the agent's ImageLoad RPC (the controller pushes) and by the image
puller (the agent fetches from the controller). The archive is spooled to a
scratch file (root-only), because image loading needs random access to the tar.
The stream is bounded (berth.imagelimits.MAX_ARCHIVE_BYTES): past the bound the
load fails with one line and the spool file is removed. Frames are written one at
a time before the next is read, so a fast sender is held back by gRPC flow control
rather than buffered here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable
from pathlib import Path

from agent.runtime.errors import ImageFormatError
from agent.runtime.images import ImageStore
from agent.runtime.layerstore import ensure_private_dir
from berth.imagelimits import MAX_ARCHIVE_BYTES
from protos import common_pb2


def _spool_open(scratch: Path) -> tuple[int, str]:
    ensure_private_dir(scratch)
    return tempfile.mkstemp(dir=scratch, suffix=".tar")


async def load_stream(
    images: ImageStore, frames: AsyncIterable[common_pb2.ImageChunk], scratch: Path,
    limit: int = MAX_ARCHIVE_BYTES,
) -> list[str]:
    """Spool FRAMES to a file under SCRATCH, load it, and return the refs it named."""
    fd, tmp = await asyncio.to_thread(_spool_open, scratch)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            # Writes go to a thread: a large archive on a slow disk would otherwise
            # stall every RPC and the reconcile loop that share this event loop.
            async for chunk in frames:
                if chunk.WhichOneof("frame") == "data":
                    size += len(chunk.data)
                    if size > limit:
                        raise ImageFormatError(
                            f"image archive is larger than the limit of {limit} bytes")
                    await asyncio.to_thread(out.write, chunk.data)
        return await asyncio.to_thread(images.load, Path(tmp))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
