"""Scrape a berth daemon's /metrics and parse it as Prometheus would (tests only)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample on the page, keyed by (name, sorted labels); fails if it does not parse."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape_until(url: str, ready: Callable[[Samples], bool], within: float = 30) -> Samples:
    """Scrape until ``ready`` holds (a daemon may still be starting); fail after ``within``."""
    deadline = time.monotonic() + within
    last: Samples = {}
    while time.monotonic() < deadline:
        try:
            last = scrape(url)
        except OSError:
            last = {}
        if ready(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"{url}: never ready; last scrape: {sorted(last)[:20]}")
