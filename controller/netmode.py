"""``network_mode`` as the scheduler resolves it: which container a joiner shares a netns with.

Called by placement.py (where a joiner goes, what its ContainerSpec says) and store.py
(apply refuses a target that no service produces). Pure functions.

``ContainerSpec.network_mode`` is "" (own netns with networks), "host", "none" or
``container:<container>``. Compose's ``service:<name>`` is resolved per replica: replica
i of the joiner shares the netns of ``<name>-i``, as a sidecar. ``container:<name>``
names one container that every replica joins.
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.manifest import ServiceDocument


def replica_index(service: str, container: str) -> int:
    """N for ``<service>-N`` (N >= 1 without leading zeros), else 0; no list is built."""
    prefix = f"{service}-"
    suffix = container.removeprefix(prefix)
    if suffix == container or not suffix.isdigit() or suffix[0] == "0" or len(suffix) > 18:
        return 0
    return int(suffix)


def joiner_target(service: ServiceDocument, container: str) -> str | None:
    """The container whose netns ``container`` (a replica of ``service``) joins, or None."""
    shared = service.spec.shares_netns_with()
    if shared is None:
        return None
    kind, name = shared
    if kind == "container":
        return name
    return f"{name}-{replica_index(service.name, container)}"


def resolved_mode(service: ServiceDocument, container: str) -> str:
    """The ContainerSpec.network_mode of one replica."""
    target = joiner_target(service, container)
    if target is not None:
        return f"container:{target}"
    return service.spec.network_mode or ""


def producer(services: Mapping[str, ServiceDocument], container: str) -> ServiceDocument | None:
    """The service whose replicas include ``container``, if any."""
    for name, doc in services.items():
        if 0 < replica_index(name, container) <= doc.spec.replicas:
            return doc
    return None


def produced(services: Mapping[str, ServiceDocument], container: str) -> bool:
    return producer(services, container) is not None
