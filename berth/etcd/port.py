"""The narrow view of etcd that the controller and the agent are written against.

Both daemons hand their modules the real ``Etcd3Client``; unit tests hand them a fake
that implements this Protocol (httpx's MockTransport is the model), so no test needs
to patch a module's internals. Only what the daemons use is here: no compaction, no
leases beyond attaching one to a put (registration holds the real client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from berth.etcd.lease import Lease
from berth.etcd.model import KVMeta, Listing, WatchEvent
from berth.etcd.txn import Compare, Op


class KeyValue(Protocol):
    @property
    def endpoint(self) -> str:
        """Where etcd is (``host:port``), for messages that must say which etcd failed."""
        ...

    async def get(self, key: str) -> tuple[bytes | None, KVMeta | None]: ...
    async def get_prefix(self, prefix: str) -> Listing: ...
    async def transaction(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> tuple[bool, list[Listing | None]]: ...
    async def put(self, key: str, value: bytes | str, lease: Lease | int | None = None) -> int: ...
    async def delete(self, key: str) -> bool: ...
    def watch_prefix(
        self, prefix: str, start_revision: int | None = None
    ) -> AsyncIterator[WatchEvent]: ...
