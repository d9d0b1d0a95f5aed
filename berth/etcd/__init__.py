"""A thin asyncio etcd v3 client over our own wire-compatible stubs (protos/etcd).

python-etcd3's method names: put, get, get_prefix, delete, delete_prefix,
transaction, lease, watch_prefix. See client.py; transaction builders in txn.py,
errors in errors.py.
"""

from __future__ import annotations

from berth.etcd import txn
from berth.etcd.client import (
    Compacted,
    DeleteEvent,
    Etcd3Client,
    KVMeta,
    Lease,
    Listing,
    Member,
    PutEvent,
    WatchEvent,
)
from berth.etcd.errors import EtcdError, EtcdPermissionDenied, EtcdUnavailable, LeaseLost
from berth.etcd.mirror import follow_prefix
from berth.etcd.port import KeyValue

__all__ = [
    "Compacted",
    "DeleteEvent",
    "Etcd3Client",
    "EtcdError",
    "EtcdPermissionDenied",
    "EtcdUnavailable",
    "KVMeta",
    "KeyValue",
    "Lease",
    "LeaseLost",
    "Listing",
    "Member",
    "PutEvent",
    "WatchEvent",
    "follow_prefix",
    "txn",
]
