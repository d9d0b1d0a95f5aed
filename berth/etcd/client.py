"""INTERFACE DRAFT — bodies to be written. Signatures are the contract other code uses.

Asyncio etcd v3 client. Owned by berth; used by the controller and the agent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KVMeta:
    key: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class Listing:
    """A consistent snapshot of a prefix: items sorted by key, and the store revision."""

    items: tuple[tuple[bytes, KVMeta], ...]
    revision: int


@dataclass(frozen=True)
class PutEvent:
    key: str
    value: bytes
    meta: KVMeta


@dataclass(frozen=True)
class DeleteEvent:
    key: str
    meta: KVMeta        # mod_revision is the delete's revision


@dataclass(frozen=True)
class Compacted:
    """The watch start revision was compacted; the client re-listed the prefix.

    Consumers must treat ``listing`` as the full truth and diff against it.
    The watch continues from ``listing.revision + 1``.
    """

    listing: Listing


WatchEvent = PutEvent | DeleteEvent | Compacted


class Lease:
    id: int
    ttl: int

    async def refresh(self) -> int: ...            # one keepalive; returns remaining TTL (0: expired)
    async def revoke(self) -> None: ...
    async def keepalive(self) -> None: ...         # runs until cancelled or lease lost (raises LeaseLost)


class Etcd3Client:
    def __init__(
        self,
        endpoint: str = "127.0.0.1:2379",
        *,
        ca_cert: str | None = None,
        cert_cert: str | None = None,
        cert_key: str | None = None,
        timeout: float = 5.0,
    ) -> None: ...

    async def __aenter__(self) -> Etcd3Client: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def close(self) -> None: ...

    async def status(self) -> dict[str, object]: ...
    async def get(self, key: str) -> tuple[bytes | None, KVMeta | None]: ...
    async def get_prefix(self, prefix: str) -> Listing: ...
    async def put(self, key: str, value: bytes | str, lease: Lease | int | None = None) -> int: ...
    async def delete(self, key: str) -> bool: ...
    async def delete_prefix(self, prefix: str) -> int: ...
    async def transaction(
        self, compare: Sequence[object], success: Sequence[object], failure: Sequence[object] = ()
    ) -> tuple[bool, list[object]]: ...
    async def lease(self, ttl: int) -> Lease: ...
    def watch_prefix(self, prefix: str, start_revision: int | None = None) -> AsyncIterator[WatchEvent]: ...
