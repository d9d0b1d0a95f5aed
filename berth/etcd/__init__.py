"""A thin asyncio etcd v3 client over our own wire-compatible stubs (protos/etcd).

python-etcd3's method names: put, get, get_prefix, delete, delete_prefix,
transaction, lease, watch_prefix. See client.py.
"""

from __future__ import annotations

from berth.etcd.client import (
    Compacted,
    DeleteEvent,
    Etcd3Client,
    KVMeta,
    Lease,
    Listing,
    PutEvent,
    WatchEvent,
)

__all__ = [
    "Compacted",
    "DeleteEvent",
    "Etcd3Client",
    "KVMeta",
    "Lease",
    "Listing",
    "PutEvent",
    "WatchEvent",
]
