"""Cluster-wide bounds the controller enforces, configured by its flags.

Built by controller.main from ``--max-replicas`` / ``--max-containers-per-node`` and passed
to store.apply (manifest checks) and placement.plan (scheduling). docs/limits.md lists every
bound with its reason; the fixed ones (manifest size, YAML depth and aliases) live in
berth.yamlsafe.

Design notes
------------
- Max replicas, 100 by default: the order of kubelet's default of 110 pods per node, so one
  service can at most fill about one node's worth of containers. A typo of a few zeros is
  refused at apply instead of making the scheduler plan a billion containers.
- Max containers per node, 110 by default: kubelet's ``--max-pods`` default, the size
  Kubernetes tests a node at. Each container costs a conmon process, a veth pair and
  FDB/ARP entries on every peer.
- Container names are ``<service>-<replica>`` and become the hostname, which Linux caps at
  63 characters (HOST_NAME_MAX). The service name limit therefore follows from the
  configured maximum replicas, not the current count: scaling up later must never produce
  a name that cannot start.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST_NAME_MAX = 63
DEFAULT_MAX_REPLICAS = 100
DEFAULT_MAX_CONTAINERS_PER_NODE = 110


@dataclass(frozen=True)
class Limits:
    max_replicas: int = DEFAULT_MAX_REPLICAS
    max_containers_per_node: int = DEFAULT_MAX_CONTAINERS_PER_NODE

    def __post_init__(self) -> None:
        if self.max_replicas < 1 or self.max_containers_per_node < 1:
            raise ValueError("limits must be at least 1")
        if self.max_service_name < 1:
            raise ValueError(f"max replicas {self.max_replicas} leaves no room for a name")

    @property
    def max_service_name(self) -> int:
        """Longest service name whose every replica's name fits in HOST_NAME_MAX."""
        return HOST_NAME_MAX - 1 - len(str(self.max_replicas))


DEFAULT_LIMITS = Limits()
