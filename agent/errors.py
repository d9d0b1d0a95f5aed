"""Errors the agent raises outside its runtime and DNS (those have their own trees).

    berth.errors.TemporaryError
    └── agent.runtime.errors.PendingError   status pending with the reason, retried
        └── NetworkUnavailable              a network driver (or its host object)
                                            refused this container on this node

agent.network raises NetworkUnavailable for any netplugins error out of ADD: a macvlan
parent missing here, a kernel without 802.1q, a netlink failure. What the driver said is
the message, behind the network's name; the reconciler shows it as the pending reason
and tries again with doubling waits up to ``delay`` seconds.
"""

from __future__ import annotations

from agent.runtime.errors import PendingError


class NetworkUnavailable(PendingError):
    """A driver could not attach the container here; ``network`` names the network."""

    def __init__(self, network: str, reason: str, *, delay: float) -> None:
        super().__init__(f"network {network}: {reason}", delay=delay)
        self.network = network
