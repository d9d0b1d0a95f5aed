"""The narrow views the reconciler needs of etcd and of the container runtime.

agent.reconcile is written against these Protocols, so its unit tests can hand it
fakes (httpx's MockTransport is the model) while agent.main hands it the real
``Etcd3Client`` and ``Runtime``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from agent.runtime.containers import Container
from berth.etcd import KVMeta, Lease, Listing, WatchEvent
from berth.etcd.txn import Compare, Op
from berth.records import ContainerSpec


class KeyValue(Protocol):
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


class ImageIndex(Protocol):
    def has(self, ref: str) -> bool: ...


class ContainerRuntime(Protocol):
    @property
    def images(self) -> ImageIndex: ...
    async def list(self) -> list[Container]: ...
    async def state(self, name: str) -> Container: ...
    async def create(self, spec: ContainerSpec) -> Container: ...
    async def start(self, name: str) -> Container: ...
    async def stop(self, name: str, timeout: float = 10.0) -> Container: ...  # noqa: ASYNC109
    async def delete(self, name: str) -> None: ...
