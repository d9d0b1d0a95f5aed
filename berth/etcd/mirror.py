"""``follow_prefix``: keep a local mirror of a key prefix, the list-then-watch way.

Called by the agent for the endpoints and assignments it mirrors (agent.endpoints) and the
nodes whose ports it closes to containers (agent.nodeports). The mirror is rebuilt from a
listing (``replace``) at the start and after a compaction, and changed one event at a
time (``apply``) in between; the watch resumes from the listing's revision, so no change
between the two is lost (flannel's list-then-watch).
"""

from __future__ import annotations

from collections.abc import Callable

from berth.etcd.model import Compacted, DeleteEvent, Listing, PutEvent
from berth.etcd.port import KeyValue


async def follow_prefix(
    etcd: KeyValue, prefix: str, replace: Callable[[Listing], None],
    apply: Callable[[PutEvent | DeleteEvent], None],
) -> None:
    """List ``prefix`` into ``replace``, then hand each change to ``apply``; until the
    watch fails or the caller is cancelled."""
    listing = await etcd.get_prefix(prefix)
    replace(listing)
    async for event in etcd.watch_prefix(prefix, start_revision=listing.revision + 1):
        if isinstance(event, Compacted):
            replace(event.listing)
        else:
            apply(event)
