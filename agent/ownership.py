"""Deleting only what this node wrote: status and endpoint keys are per container name.

A container can move between nodes (a placement change, a quick scale-down and
up). The old node finishes removing its copy after the new node has already
written the same keys, so an unconditional delete would erase the new node's
records. Here a key is deleted only when its value names this node, fenced by
its mod revision so a write in between wins. Used by agent.reconcile and
agent.network.
"""

from __future__ import annotations

import json

from agent.ports import KeyValue
from berth.etcd import txn


def written_by(value: bytes, node: str) -> bool:
    try:
        data = json.loads(value)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("node") == node


async def delete_own(etcd: KeyValue, key: str, node: str) -> bool:
    """Delete KEY if this NODE wrote it and nobody wrote it since; True if deleted."""
    value, meta = await etcd.get(key)
    if value is None or meta is None or not written_by(value, node):
        return False
    deleted, _ = await etcd.transaction([txn.mod(key) == meta.mod_revision], [txn.delete(key)])
    return deleted
