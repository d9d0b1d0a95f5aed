"""Back-off between failed attempts: the one formula every berth loop uses.

Loops that must never give up (the controller's scheduler, the agent's per-container
workers, a driver's host-wide sync) cannot be wrapped in a tenacity ``Retrying``: they
own their loop, sleep on a wake-up event rather than a plain sleep, and reset after a
success. ``Backoff`` keeps their count of failures in a row and asks tenacity's
exponential wait what the next delay is, so the curve is tenacity's, written once.
Calls that are retried as a whole (etcd watch opens, apply conflicts) use tenacity's
``AsyncRetrying`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenacity import RetryCallState, wait_exponential


@dataclass
class Backoff:
    """``first`` seconds after one failure, doubling per failure in a row, at most ``cap``."""

    first: float
    cap: float
    failures: int = 0
    _wait: wait_exponential = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._wait = wait_exponential(multiplier=self.first, min=self.first, max=self.cap)

    def failed(self) -> float:
        """Count one more failure; return how long to wait before the next attempt."""
        self.failures += 1
        return self.delay()

    def delay(self) -> float:
        """The wait after the failures counted so far (0 when there were none)."""
        if self.failures == 0:
            return 0.0
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = self.failures
        return float(self._wait(state))

    def succeeded(self) -> None:
        self.failures = 0
