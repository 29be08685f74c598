"""Prometheus metrics of a workflow, built at scrape time from its status (docs/metrics.md).

Nothing here runs on a loop's hot path: the loops keep the counters they already keep for
status, and :class:`StatusCollector` reads one :class:`WorkflowStatus` snapshot per scrape and
turns it into metric families. There are no prometheus-client metric objects to update. The
duration histograms are integer bucket counters in status too, filled by the engine for the
iterations it samples (see ``LoopManager._sample``).

Process-pool loops count in their own process and report their status to the parent through
the hub with every heartbeat (``heartbeatSeconds``) and at every state change, so the parent's
:meth:`WorkflowOrchestrator.status` already holds their counters: a scrape of the parent shows
them, up to one heartbeat old. A restarted process starts counting from zero again, which
Prometheus treats as a counter reset (``rate()`` and ``increase()`` handle it).

Labels are only ``workflow``, ``loop``, ``node`` and ``queue`` (and ``version`` on
``ostinato_build_info``). Replicas of a loop are summed into one series per loop for counters
and for in-flight calls; the state and health gauges take the worst replica (see
:data:`LOOP_STATE_SEVERITY` and :data:`NODE_HEALTH_VALUES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .._model._status import DurationHistogram, LoopState, LoopStatus, NodeHealth, WorkflowStatus
from .._model._version import __version__

__all__ = [
    "LOOP_STATE_VALUES",
    "NODE_HEALTH_VALUES",
    "StatusCollector",
    "families",
    "metrics_registry",
]

#: ``ostinato_loop_state``: the value of each state (LoopState's order of declaration).
LOOP_STATE_VALUES: dict[LoopState, int] = {
    LoopState.PENDING: 0,
    LoopState.RUNNING: 1,
    LoopState.PAUSED: 2,
    LoopState.STOPPING: 3,
    LoopState.STOPPED: 4,
    LoopState.ERROR: 5,
    LoopState.FINISHED: 6,
}

#: A loop with several replicas reports the first state in this list that any replica is in.
LOOP_STATE_SEVERITY: tuple[LoopState, ...] = (
    LoopState.ERROR,
    LoopState.PENDING,
    LoopState.STOPPING,
    LoopState.PAUSED,
    LoopState.RUNNING,
    LoopState.STOPPED,
    LoopState.FINISHED,
)

#: ``ostinato_node_health``: the value of each health, worse is higher; replicas: the worst.
NODE_HEALTH_VALUES: dict[NodeHealth, int] = {
    NodeHealth.HEALTHY: 0,
    NodeHealth.RETRYING: 1,
    NodeHealth.FAILING: 2,
}

#: The node counter that producers with a schedule (IntervalProducer) keep for skipped ticks.
MISSED_TICKS = "missedTicks"

_LOOP = ["workflow", "loop"]
_NODE = ["workflow", "loop", "node"]
_QUEUE = ["workflow", "queue"]


@dataclass
class _NodeSums:
    kind: str
    calls: int = 0
    errors: int = 0
    retries: int = 0
    in_flight: int = 0
    dropped: int = 0
    missed_ticks: int = 0
    health: int = 0
    duration: DurationHistogram = field(default_factory=DurationHistogram)


@dataclass
class _LoopSums:
    replicas: int = 0
    iterations: int = 0
    failed_iterations: int = 0
    restarts: int = 0
    states: set[LoopState] = field(default_factory=set)
    nodes: dict[str, _NodeSums] = field(default_factory=dict)
    duration: DurationHistogram = field(default_factory=DurationHistogram)

    def add(self, lp: LoopStatus) -> None:
        self.replicas += 1
        self.iterations += lp.iterations
        self.failed_iterations += lp.failed_iterations
        self.restarts += lp.restarts
        self.states.add(lp.state)
        self.duration = self.duration.merged(lp.iteration_duration)
        for n in lp.nodes:
            sums = self.nodes.setdefault(n.name, _NodeSums(kind=n.kind))
            sums.calls += n.calls
            sums.errors += n.errors
            sums.retries += n.retries
            sums.in_flight += n.in_flight
            sums.dropped += n.dropped
            sums.missed_ticks += n.counters.get(MISSED_TICKS, 0)
            sums.health = max(sums.health, NODE_HEALTH_VALUES[n.health])
            sums.duration = sums.duration.merged(n.duration)

    @property
    def state(self) -> LoopState:
        return next(s for s in LOOP_STATE_SEVERITY if s in self.states)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    # CounterMetricFamily adds the "_total" suffix to the sample names.
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)


_Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


def _empty_families() -> dict[str, _Family]:
    loop_state = ", ".join(f"{v} {s.value}" for s, v in LOOP_STATE_VALUES.items())
    health = ", ".join(f"{v} {h.value}" for h, v in NODE_HEALTH_VALUES.items())
    fams: list[_Family] = [
        GaugeMetricFamily(
            "ostinato_build_info",
            "Always 1; the ostinato version running this workflow.",
            labels=["workflow", "version"],
        ),
        _counter(
            "ostinato_iterations_total", "Loop iterations finished, failed ones included.", _LOOP
        ),
        _counter("ostinato_failed_iterations_total", "Loop iterations that failed.", _LOOP),
        _counter(
            "ostinato_loop_restarts_total",
            "Process loops: times the loop's process was restarted after it died.",
            _LOOP,
        ),
        GaugeMetricFamily(
            "ostinato_loop_state",
            f"Loop state: {loop_state}. Several replicas: the worst one "
            "(error, pending, stopping, paused, running, stopped).",
            labels=_LOOP,
        ),
        GaugeMetricFamily("ostinato_loop_replicas", "Replicas of the loop.", labels=_LOOP),
        HistogramMetricFamily(
            "ostinato_iteration_duration_seconds",
            "Sampled iterations: seconds from the producer's output to the end of the chain.",
            labels=_LOOP,
        ),
        HistogramMetricFamily(
            "ostinato_node_duration_seconds",
            "Sampled node call attempts (producers included): seconds per attempt.",
            labels=_NODE,
        ),
        _counter(
            "ostinato_node_calls_total",
            "Node calls that finished, successful or failed after their retries.",
            _NODE,
        ),
        _counter(
            "ostinato_node_errors_total", "Node calls that failed after their retries.", _NODE
        ),
        _counter("ostinato_node_retries_total", "Node retry attempts.", _NODE),
        GaugeMetricFamily(
            "ostinato_node_in_flight", "Non-blocking node calls pending now.", labels=_NODE
        ),
        _counter(
            "ostinato_node_dropped_total",
            "Non-blocking node calls dropped because maxInFlight was full.",
            _NODE,
        ),
        _counter(
            "ostinato_missed_ticks_total",
            "Producers: scheduled ticks skipped because the loop overran them.",
            _NODE,
        ),
        GaugeMetricFamily(
            "ostinato_node_health",
            f"Node health: {health}. Several replicas: the worst one.",
            labels=_NODE,
        ),
        GaugeMetricFamily(
            "ostinato_loop_desired_replicas",
            "Autoscaled loops: the replicas the last decision asks for.",
            labels=_LOOP,
        ),
        GaugeMetricFamily(
            "ostinato_loop_current_replicas",
            "Autoscaled loops: the replicas running or starting.",
            labels=_LOOP,
        ),
        GaugeMetricFamily(
            "ostinato_queue_depth",
            "Messages waiting in the queue's fullest consumer group.",
            labels=_QUEUE,
        ),
        _counter("ostinato_queue_enqueued_total", "Messages accepted into the queue.", _QUEUE),
        _counter("ostinato_queue_delivered_total", "Messages delivered to consumers.", _QUEUE),
        _counter(
            "ostinato_queue_acknowledged_total", "Messages acknowledged by consumers.", _QUEUE
        ),
        _counter(
            "ostinato_queue_dropped_total",
            "Messages dropped by the queue's overflow policy.",
            _QUEUE,
        ),
        _counter(
            "ostinato_queue_redelivered_total",
            "Messages delivered again after their consumer was lost or gone.",
            _QUEUE,
        ),
        _counter(
            "ostinato_queue_refused_total",
            "Messages refused because they were larger than maxMessageBytes.",
            _QUEUE,
        ),
    ]
    return {f.name: f for f in fams}


def families(status: WorkflowStatus, version: str) -> list[Metric]:
    """The metric families of one status snapshot (every family, even with no samples)."""
    fams = _empty_families()

    def add(name: str, labels: list[str], value: float) -> None:
        family = fams[name.removesuffix("_total")]
        assert not isinstance(family, HistogramMetricFamily)
        family.add_metric(labels, value)

    def histogram(name: str, labels: list[str], h: DurationHistogram) -> None:
        family = fams[name]
        assert isinstance(family, HistogramMetricFamily)
        family.add_metric(labels, buckets=h.cumulative(), sum_value=h.sum_seconds)

    wf = status.workflow
    add("ostinato_build_info", [wf, version], 1)
    loops: dict[str, _LoopSums] = {}
    for lp in status.loops:
        loops.setdefault(lp.name, _LoopSums()).add(lp)
    for name, sums in loops.items():
        lb = [wf, name]
        add("ostinato_iterations_total", lb, sums.iterations)
        add("ostinato_failed_iterations_total", lb, sums.failed_iterations)
        add("ostinato_loop_restarts_total", lb, sums.restarts)
        add("ostinato_loop_state", lb, LOOP_STATE_VALUES[sums.state])
        add("ostinato_loop_replicas", lb, sums.replicas)
        histogram("ostinato_iteration_duration_seconds", lb, sums.duration)
        for node, n in sums.nodes.items():
            nb = [wf, name, node]
            add("ostinato_node_calls_total", nb, n.calls)
            add("ostinato_node_errors_total", nb, n.errors)
            add("ostinato_node_retries_total", nb, n.retries)
            add("ostinato_node_in_flight", nb, n.in_flight)
            add("ostinato_node_dropped_total", nb, n.dropped)
            add("ostinato_node_health", nb, n.health)
            histogram("ostinato_node_duration_seconds", nb, n.duration)
            if n.kind == "producer":
                # Every producer gets the series (0 when it has no schedule), so that it
                # exists before the first missed tick.
                add("ostinato_missed_ticks_total", nb, n.missed_ticks)
    for scale in status.autoscale:
        if scale.desired_replicas is not None:
            add("ostinato_loop_desired_replicas", [wf, scale.loop], scale.desired_replicas)
        add("ostinato_loop_current_replicas", [wf, scale.loop], scale.current_replicas)
    for q in status.queues:
        qb = [wf, q.name]
        add("ostinato_queue_depth", qb, q.depth)
        add("ostinato_queue_enqueued_total", qb, q.enqueued)
        add("ostinato_queue_delivered_total", qb, q.delivered)
        add("ostinato_queue_acknowledged_total", qb, q.acknowledged)
        add("ostinato_queue_dropped_total", qb, q.dropped)
        add("ostinato_queue_redelivered_total", qb, q.redelivered)
        add("ostinato_queue_refused_total", qb, q.refused)
    return list(fams.values())


class StatusCollector:
    """A prometheus-client collector that reads ``status()`` once per scrape."""

    def __init__(self, status: Callable[[], WorkflowStatus], version: str | None = None) -> None:
        if version is None:
            version = __version__
        self._status = status
        self._version = version

    def collect(self) -> Iterator[Metric]:
        yield from families(self._status(), self._version)

    def describe(self) -> Iterable[Metric]:
        """The families without samples: lets a registry check names without a status read."""
        return list(_empty_families().values())


def metrics_registry(
    status: Callable[[], WorkflowStatus], version: str | None = None
) -> CollectorRegistry:
    """A registry of its own (not prometheus-client's global one) holding a StatusCollector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status, version))
    return registry
