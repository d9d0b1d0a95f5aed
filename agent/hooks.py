"""The seam between the reconciler and node-level work that is not the runtime's.

agent.reconcile calls these at fixed points of a container's life; agent.network
implements them for networks and DNS.
"""

from __future__ import annotations

from agent.runtime.containers import Container
from berth.records import ContainerSpec


class ContainerHooks:
    """Work around a container's life that is not the runtime's (networks, DNS).

    The base class does nothing: a node without networking still runs containers.
    """

    async def before_start(self, spec: ContainerSpec, container: Container) -> None:
        """Between create and start: the netns exists and nothing runs in it yet."""

    async def ensure_running(self, spec: ContainerSpec, container: Container) -> None:
        """Every pass for a running container; idempotent (adoption after a restart)."""

    async def on_stopped(self, spec: ContainerSpec) -> None:
        """Every pass for a container that exited and stays (no restart)."""

    async def before_delete(self, name: str, spec: ContainerSpec | None) -> None:
        """Before the runtime deletes the container."""
