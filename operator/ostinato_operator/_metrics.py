"""The operator's own Prometheus metrics (reconciles, errors, durations, managed workflows)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = [
    "REGISTRY",
    "loop_current_replicas",
    "loop_desired_replicas",
    "managed_workflows",
    "reconciles",
    "serve",
    "timed",
]

#: Its own registry: the runtime's metrics (imported with ostinato) are not the operator's.
REGISTRY = CollectorRegistry(auto_describe=True)

reconciles = Counter(
    "ostinato_operator_reconciles_total",
    "Reconciliations of a Workflow's children, by trigger.",
    ["trigger"],
    registry=REGISTRY,
)
reconcile_errors = Counter(
    "ostinato_operator_reconcile_errors_total",
    "Reconciliations that failed (retried by kopf), by trigger.",
    ["trigger"],
    registry=REGISTRY,
)
reconcile_seconds = Histogram(
    "ostinato_operator_reconcile_duration_seconds",
    "Time one reconciliation took, seconds.",
    ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
status_rounds = Counter(
    "ostinato_operator_status_updates_total",
    "Status rounds (one hub GET /status each), by outcome: ok, hub_error, error.",
    ["outcome"],
    registry=REGISTRY,
)
managed_workflows = Gauge(
    "ostinato_operator_managed_workflows",
    "Workflows this operator currently manages.",
    registry=REGISTRY,
)

loop_desired_replicas = Gauge(
    "ostinato_operator_loop_desired_replicas",
    "Autoscaled loops: the replicas (pods) the last decision asks for.",
    ["namespace", "workflow", "loop"],
    registry=REGISTRY,
)
loop_current_replicas = Gauge(
    "ostinato_operator_loop_current_replicas",
    "Autoscaled loops: the loop's pods that exist and are not being deleted.",
    ["namespace", "workflow", "loop"],
    registry=REGISTRY,
)


@contextmanager
def timed(trigger: str) -> Iterator[None]:
    """Count one reconciliation, its duration, and (on an exception) its failure."""
    start = time.perf_counter()
    reconciles.labels(trigger).inc()
    try:
        yield
    except BaseException:
        reconcile_errors.labels(trigger).inc()
        raise
    finally:
        reconcile_seconds.labels(trigger).observe(time.perf_counter() - start)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """/metrics on ``port`` in a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
