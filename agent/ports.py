"""The narrow views the reconciler needs of etcd (berth.etcd.KeyValue) and of the runtime.

agent.reconcile is written against these Protocols, so its unit tests can hand it
fakes (httpx's MockTransport is the model) while agent.main hands it the real
``Etcd3Client`` and ``Runtime``.
"""

from __future__ import annotations

from typing import Protocol

from agent.runtime.containers import Container
from berth.etcd import KeyValue as KeyValue  # the one etcd port, shared with the controller
from berth.records import ContainerSpec


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
