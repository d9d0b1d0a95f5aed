from __future__ import annotations

import pytest

from berth import metrics
from berth.errors import UserError
from tests.metricsread import scrape


def test_served_series_parse_and_follow_what_was_recorded() -> None:
    server = metrics.serve("127.0.0.1:0")
    try:
        with metrics.reconcile_pass("agent"):
            pass
        with pytest.raises(RuntimeError), metrics.reconcile_pass("agent"):
            raise RuntimeError("boom")
        metrics.set_containers("agent", ["running", "running", "exited"])
        metrics.set_containers("agent", ["running"])     # exited is gone: 0, not 1
        got = scrape(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
    assert got[("berth_containers", (("daemon", "agent"), ("state", "running")))] == 1
    assert got[("berth_containers", (("daemon", "agent"), ("state", "exited")))] == 0
    ok = got[("berth_reconcile_passes_total", (("daemon", "agent"), ("outcome", "ok")))]
    bad = got[("berth_reconcile_passes_total", (("daemon", "agent"), ("outcome", "error")))]
    assert ok >= 1 and bad >= 1
    assert got[("berth_reconcile_pass_seconds_count", (("daemon", "agent"),))] >= 2


@pytest.mark.parametrize("listen", ["9100", "host:", ":x"], ids=["no-host", "no-port", "bad"])
def test_bad_listen_address_is_one_line(listen: str) -> None:
    with pytest.raises(UserError, match="--metrics-listen"):
        metrics.serve(listen)


def _etcd_errors() -> float:
    return sum(s.value for family in metrics.ETCD_ERRORS.collect() for s in family.samples
               if s.name.endswith("_total"))


async def test_failed_etcd_requests_are_counted() -> None:
    import socket

    from berth.etcd import Etcd3Client
    from berth.etcd.errors import EtcdUnavailable

    with socket.socket() as sock:   # a port with nobody behind it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = _etcd_errors()
    async with Etcd3Client(f"127.0.0.1:{port}", timeout=0.3) as etcd:
        with pytest.raises(EtcdUnavailable):
            await etcd.get("/x")
    assert _etcd_errors() == before + 1
