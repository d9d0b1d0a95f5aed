"""Loading an image archive that arrives as a stream of ``ImageChunk`` frames.

Used by the agent's ImageLoad RPC (the controller pushes) and by the image
puller (the agent fetches from the controller). The archive is spooled to a
scratch file, because image loading needs random access to the tar.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from agent.runtime.images import ImageStore
from protos import common_pb2


def _spool_open(scratch: Path) -> tuple[int, str]:
    scratch.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=scratch, suffix=".tar")


async def load_stream(
    images: ImageStore, frames: AsyncIterator[common_pb2.ImageChunk], scratch: Path
) -> list[str]:
    """Spool FRAMES to a file under SCRATCH, load it, and return the refs it named."""
    fd, tmp = await asyncio.to_thread(_spool_open, scratch)
    try:
        with os.fdopen(fd, "wb") as out:
            # Writes go to a thread: a large archive on a slow disk would otherwise
            # stall every RPC and the reconcile loop that share this event loop.
            async for chunk in frames:
                if chunk.WhichOneof("frame") == "data":
                    await asyncio.to_thread(out.write, chunk.data)
        return await asyncio.to_thread(images.load, Path(tmp))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
