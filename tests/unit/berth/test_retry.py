from __future__ import annotations

from berth.retry import Backoff


def test_backoff_doubles_per_failure_and_is_capped() -> None:
    retry = Backoff(1.0, 10.0)
    assert retry.delay() == 0.0
    assert [retry.failed() for _ in range(7)] == [1, 2, 4, 8, 10, 10, 10]


def test_backoff_starts_over_after_a_success() -> None:
    retry = Backoff(0.5, 30.0)
    retry.failed()
    retry.failed()
    retry.succeeded()
    assert (retry.failures, retry.delay(), retry.failed()) == (0, 0.0, 0.5)


def test_many_failures_do_not_overflow() -> None:
    retry = Backoff(1.0, 10.0, failures=100_000)
    assert retry.failed() == 10.0
