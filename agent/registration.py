"""Node registration: the node record lives under an etcd lease the agent keeps alive.

While the key /berth/nodes/<node> exists the controller counts the node as Ready;
if the agent dies the lease expires and the key goes with it (flannel's subnet
lease works the same way). Called by agent.main; runs until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from berth import keyspace
from berth.errors import TemporaryError
from berth.etcd import Etcd3Client
from berth.records import NodeRecord

log = logging.getLogger(__name__)


def node_record(
    name: str, address: str, agent_addr: str, *, mtu: int = 1500
) -> NodeRecord:
    return NodeRecord(
        name=name,
        address=address,
        agent_addr=agent_addr,
        mtu=mtu,
        cpus=os.cpu_count() or 1,
        memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        started_at=datetime.now(UTC).isoformat(),
    )


class Registration:
    """Keeps /berth/nodes/<node> attached to a live lease, re-granting after loss."""

    def __init__(self, etcd: Etcd3Client, record: NodeRecord, ttl: int) -> None:
        self._etcd = etcd
        self._record = record
        self._ttl = ttl
        self.registered = asyncio.Event()

    async def _hold_once(self) -> None:
        lease = await self._etcd.lease(self._ttl)
        try:
            await self._etcd.put(
                keyspace.node(self._record.name), self._record.dumps(), lease=lease
            )
            self.registered.set()
            log.info("node %s registered with lease %x", self._record.name, lease.id)
            await lease.keepalive()
        finally:
            self.registered.clear()
        raise TemporaryError(f"lease {lease.id:x} lost", delay=0.5)

    async def run(self) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=5),
        ):
            with attempt:
                try:
                    await self._hold_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("registration: %s; retrying", exc)
                    raise
