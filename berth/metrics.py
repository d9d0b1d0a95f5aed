"""Prometheus metrics both daemons serve on ``/metrics``: the series and the HTTP endpoint.

Owned by berth so that the controller and the agent name their series alike. The
controller's scheduler and the agent's reconciler record passes; both daemons publish
their containers by state; the etcd client counts failed requests by gRPC code. Each
daemon is its own process, so prometheus-client's process-wide default registry is
the daemon's registry. ``serve`` starts prometheus-client's HTTP server in a daemon
thread, which keeps the scrape off the event loop.

Series (all prefixed ``berth_``):

    containers{daemon, state}                 gauge: containers by state, as last seen
    reconcile_passes_total{daemon, outcome}   counter: ok | error
    reconcile_pass_seconds{daemon}            histogram: the duration of one pass
    etcd_request_errors_total{code}           counter: failed etcd requests by gRPC code
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from berth.errors import UserError

Daemon = Literal["controller", "agent"]

CONTAINERS = Gauge("berth_containers", "Containers by state, as last seen",
                   ["daemon", "state"])
PASSES = Counter("berth_reconcile_passes", "Reconcile passes by outcome",
                 ["daemon", "outcome"])
PASS_SECONDS = Histogram("berth_reconcile_pass_seconds", "Duration of one reconcile pass",
                         ["daemon"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                              2.5, 5, 10))
ETCD_ERRORS = Counter("berth_etcd_request_errors", "Failed etcd requests by gRPC code",
                      ["code"])


@contextmanager
def reconcile_pass(daemon: Daemon) -> Iterator[None]:
    """Time one pass and count it as ok, or as error if it raises (the error goes on)."""
    start = time.monotonic()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        PASS_SECONDS.labels(daemon).observe(time.monotonic() - start)
        PASSES.labels(daemon, outcome).inc()


def set_containers(daemon: Daemon, states: Iterable[str],
                   known: Iterable[str] = ()) -> None:
    """Publish how many containers are in each state; states in ``known`` show 0 too."""
    counts: dict[str, int] = dict.fromkeys(known, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    _publish(daemon, counts)


def _publish(daemon: Daemon, counts: Mapping[str, int]) -> None:
    for state, count in counts.items():
        CONTAINERS.labels(daemon, state).set(count)
    # A state nobody is in any more reads 0 rather than its last count.
    for labels in list(_known_states(daemon)):
        if labels not in counts:
            CONTAINERS.labels(daemon, labels).set(0)


def _known_states(daemon: Daemon) -> Iterator[str]:
    for metric in CONTAINERS.collect():
        for sample in metric.samples:
            if sample.labels.get("daemon") == daemon:
                yield sample.labels["state"]


@dataclass
class MetricsServer:
    server: WSGIServer
    port: int

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(listen: str) -> MetricsServer:
    """Serve ``/metrics`` on ``HOST:PORT`` (port 0 picks one) in a daemon thread."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UserError(f"--metrics-listen: expected HOST:PORT, got {listen!r}")
    try:
        server, _thread = start_http_server(int(port), addr=host.strip("[]"))
    except OSError as exc:
        raise UserError(f"--metrics-listen: cannot listen on {listen}: {exc}") from exc
    return MetricsServer(server, server.server_port)
