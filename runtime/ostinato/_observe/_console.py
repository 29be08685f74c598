"""The live web console's server side: its page and assets (shipped in the package), the
workflow as a graph, and the figures the page polls at ``GET /console/data`` (docs/console.md).

The page is static: ``/console/`` and its modules never carry the workflow's data, and never a
token. The page asks ``/console/data`` (``READ`` access, like ``/status``) every
``refresh_seconds`` and controls loops through ``POST /control`` itself, with the token the user
pasted into it. :class:`ConsoleHistory` keeps, in memory and within a fixed bound, the last
``history_seconds`` of iterations per second per loop and depth per queue for its charts.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field

from .._model._plan import WorkflowPlan
from .._model._status import (
    DURATION_BUCKETS_SECONDS,
    DurationHistogram,
    LoopState,
    LoopStatus,
    NodeHealth,
    WorkflowStatus,
    is_breaker_open,
    is_lost,
)
from ._console_graph import Camel, WorkflowGraph, workflow_graph
from ._metrics import LOOP_STATE_SEVERITY, MISSED_TICKS
from ._serving import Access, Reply, Request, Route

__all__ = [
    "ASSETS",
    "Console",
    "ConsoleData",
    "ConsoleHistory",
    "ConsoleSettings",
    "percentile",
]

#: The files of the page, served under /console/ from the package (no network at run time).
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "graph.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
#: The counters an IntervalProducer keeps of the ticks it produced after they were due.
LATE_TICKS = "lateTicks"
LATE_MICROSECONDS = "lateMicroseconds"
#: The console's rates (iterations, messages in and out per second) span about this, seconds:
#: short, so a pause shows as 0 within a few seconds.
RATE_SPAN_SECONDS = 3.0
#: The page runs only its own files, and no other site may frame it (and so trick a user who gave
#: it the token into pressing Stop).
_PAGE_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
)


class ConsoleSettings(BaseModel):
    """How the console serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: How far back the charts reach, seconds (kept in memory, one sample a second).
    history_seconds: float = Field(default=600.0, gt=0, le=3600)
    #: How often the page asks for new figures, seconds.
    refresh_seconds: float = Field(default=1.0, gt=0, le=2)
    #: Kubernetes: the operator owns the desired states, so the page shows the spec's state and
    #: the ``kubectl patch`` that changes it instead of controls.
    managed_by_operator: bool = False


def percentile(histogram: DurationHistogram, q: float) -> float | None:
    """The upper bound of the bucket holding the ``q``-quantile, seconds (None: no data, or
    above the largest bound)."""
    total = histogram.count
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bound, n in zip(DURATION_BUCKETS_SECONDS, histogram.counts, strict=False):
        seen += n
        if seen >= rank:
            return bound
    return None


class NodeFigures(Camel):
    name: str
    health: NodeHealth
    calls: int
    errors: int
    retries: int
    in_flight: int
    dropped: int
    missed_ticks: int
    late_ticks: int
    #: How late its late ticks were on average, seconds (timed producers; None: none late).
    mean_lateness_seconds: float | None
    last_error: str | None
    p50_seconds: float | None
    p90_seconds: float | None
    p99_seconds: float | None


class LoopFigures(Camel):
    """One loop, its replicas taken together: the worst state, summed counts and rates."""

    name: str
    #: A LoopState; "lost" when the hub has not heard from a replica; "idle" when autoscaling
    #: has no replica running (scaled to minReplicas 0).
    state: str
    desired_state: str | None
    reason: str | None
    replica_states: list[str]
    iterations: int
    failed_iterations: int
    iterations_per_second: float | None
    missed_ticks: int
    late_ticks: int
    mean_lateness_seconds: float | None
    breaker: str | None  # closed or open; None without a circuit breaker
    #: Autoscaled loops: what the last decision wants and what runs (None: not autoscaled, or
    #: the decision is made elsewhere, as by the operator on Kubernetes).
    desired_replicas: int | None = None
    current_replicas: int | None = None
    nodes: list[NodeFigures]


class QueueFigures(Camel):
    name: str
    depth: int
    capacity: int
    enqueued_per_second: float | None
    delivered_per_second: float | None
    enqueued: int
    delivered: int
    dropped: int
    redelivered: int
    refused: int


class History(Camel):
    """The charts' series: wall-clock seconds, and one value per time (None: not known)."""

    times: list[float]
    loops: dict[str, list[float | None]]
    queues: dict[str, list[int]]


class ConsoleData(Camel):
    """What ``GET /console/data`` answers: the graph, the figures, the status they come from
    (as ``/status`` serves it) and the history."""

    graph: WorkflowGraph
    loops: list[LoopFigures]
    queues: list[QueueFigures]
    status: WorkflowStatus
    history: History
    refresh_seconds: float
    managed_by_operator: bool


@dataclass(frozen=True)
class _Sample:
    time: float  # wall clock, seconds
    iterations: dict[str, int | None]  # per loop, its replicas' sum
    rates: dict[str, float | None]  # per loop, iterations per second
    queues: dict[str, tuple[int, int, int]]  # per queue: depth, enqueued, delivered

    def at(self, loop: str) -> tuple[float, int | None]:
        return self.time, self.iterations.get(loop)


def _rate(then: tuple[float, int | None] | None, now: tuple[float, int | None]) -> float | None:
    """(count now - count then) / (time now - time then), or None where not known."""
    if then is None or then[1] is None or now[1] is None:
        return None
    elapsed, grown = now[0] - then[0], now[1] - then[1]
    return grown / elapsed if elapsed > 0 and grown >= 0 else None


def _loop_state(states: list[LoopState], reasons: list[str | None]) -> str:
    if any(is_lost(r) for r in reasons):
        return "lost"
    return next((s.value for s in LOOP_STATE_SEVERITY if s in states), LoopState.PENDING.value)


def _nodes(replicas: list[LoopStatus]) -> dict[str, NodeFigures]:
    """Each node of a loop, its replicas taken together: summed counts, the worst health, a
    last error of any, percentiles of the merged histograms."""
    out: dict[str, NodeFigures] = {}
    names = list(dict.fromkeys(n.name for lp in replicas for n in lp.nodes))
    for name in names:
        copies = [n for lp in replicas for n in lp.nodes if n.name == name]
        histogram = DurationHistogram()
        for n in copies:
            histogram = histogram.merged(n.duration)
        late = sum(n.counters.get(LATE_TICKS, 0) for n in copies)
        late_us = sum(n.counters.get(LATE_MICROSECONDS, 0) for n in copies)
        out[name] = NodeFigures(
            name=name,
            health=max((n.health for n in copies), key=list(NodeHealth).index),
            calls=sum(n.calls for n in copies),
            errors=sum(n.errors for n in copies),
            retries=sum(n.retries for n in copies),
            in_flight=sum(n.in_flight for n in copies),
            dropped=sum(n.dropped for n in copies),
            missed_ticks=sum(n.counters.get(MISSED_TICKS, 0) for n in copies),
            late_ticks=late,
            mean_lateness_seconds=late_us / late / 1e6 if late else None,
            last_error=next((n.last_error for n in copies if n.last_error), None),
            p50_seconds=percentile(histogram, 0.5),
            p90_seconds=percentile(histogram, 0.9),
            p99_seconds=percentile(histogram, 0.99),
        )
    return out


class ConsoleHistory:
    """The last ``seconds`` of iterations/s per loop and depth per queue (thread-safe).

    Each sample keeps every loop's iterations (its replicas' sum; None while one of them is
    pending, whose 0 is a placeholder) and every queue's depth and counts. A loop's rate at a
    sample is its iterations since the sample about ``span`` seconds before, over that time (None
    when either is not known or the count went down: a restarted process loop counts from zero);
    the queues' rates are found the same way when asked.
    """

    def __init__(self, seconds: float, every: float, span: float = RATE_SPAN_SECONDS) -> None:
        self.every = every
        self.span = span
        self._lock = threading.Lock()
        self._samples: collections.deque[_Sample] = collections.deque(
            maxlen=max(2, int(seconds / every))
        )

    def sample(self, status: WorkflowStatus, now: float | None = None) -> None:
        now = time.time() if now is None else now
        totals: dict[str, int | None] = {}
        for lp in status.loops:
            known = totals.get(lp.name, 0)
            pending = lp.state is LoopState.PENDING
            totals[lp.name] = None if known is None or pending else known + lp.iterations
        queues = {q.name: (q.depth, q.enqueued, q.delivered) for q in status.queues}
        with self._lock:
            before = self._before(now)
            rates = {
                name: _rate(before.at(name) if before else None, (now, total))
                for name, total in totals.items()
            }
            self._samples.append(_Sample(now, totals, rates, queues))

    def _before(self, now: float) -> _Sample | None:
        """The oldest sample at most ``span`` seconds before ``now`` (else the latest)."""
        earlier = [s for s in self._samples if s.time < now]
        return next((s for s in earlier if s.time >= now - self.span), None) or (
            earlier[-1] if earlier else None
        )

    def history(self) -> History:
        with self._lock:
            samples = list(self._samples)
        loops = sorted({name for s in samples for name in s.rates})
        queues = sorted({name for s in samples for name in s.queues})
        return History(
            times=[round(s.time, 3) for s in samples],
            loops={n: [s.rates.get(n) for s in samples] for n in loops},
            queues={n: [s.queues.get(n, (0, 0, 0))[0] for s in samples] for n in queues},
        )

    def loop_rate(self, loop: str) -> float | None:
        """The loop's iterations per second at the last sample."""
        with self._lock:
            return self._samples[-1].rates.get(loop) if self._samples else None

    def queue_rates(self, queue: str) -> tuple[float | None, float | None]:
        """(enqueued/s, delivered/s) over about the last ``span`` seconds of samples."""
        with self._lock:
            if not self._samples or queue not in self._samples[-1].queues:
                return None, None
            last = self._samples[-1]
            before = self._before(last.time)
        if before is None or queue not in before.queues:
            return None, None
        (_, enq0, del0), (_, enq1, del1) = before.queues[queue], last.queues[queue]
        return (
            _rate((before.time, enq0), (last.time, enq1)),
            _rate((before.time, del0), (last.time, del1)),
        )


class Console:
    """The console of one workflow: its routes, and the history its server samples."""

    def __init__(
        self,
        plan: WorkflowPlan,
        settings: ConsoleSettings | None = None,
        every: float = 1.0,
        newer_plan: Callable[[], WorkflowPlan | None] | None = None,
    ) -> None:
        """``newer_plan``: asked before each data read, the workflow's plan when it changed
        since the last ask, else None (a hub whose document the operator rewrites in place)."""
        self.settings = settings or ConsoleSettings()
        self.history = ConsoleHistory(self.settings.history_seconds, every)
        self._newer_plan = newer_plan
        self._lock = threading.Lock()
        self._adopt(plan)
        folder = resources.files(__package__ or "ostinato._observe") / "_console_assets"
        self._assets = {name: (folder / name).read_bytes() for name in ASSETS}

    def _adopt(self, plan: WorkflowPlan) -> None:
        self.graph = workflow_graph(plan, self.settings.managed_by_operator)
        self._capacity = {q.name: q.capacity for q in plan.queues.values()}
        self._producers = {g.name: g.producer.name for g in self.graph.loops}
        self._breakers = {lp.name for lp in plan.loops if lp.spec.circuit_breaker is not None}

    def routes(self, status: Callable[[], WorkflowStatus]) -> list[Route]:
        """The page and its assets (open: nothing of the workflow is in them) and the data
        (``READ``, like /status); ``status`` is /status's, with the iteration rates."""

        def asset(name: str) -> Callable[[Request], Reply]:
            body, media = self._assets[name], ASSETS[name]
            return lambda _request: Reply(HTTPStatus.OK, media, body, _PAGE_HEADERS)

        def data(_request: Request) -> Reply:
            body = self.data(status()).model_dump_json(by_alias=True)
            return Reply(HTTPStatus.OK, "application/json", body.encode() + b"\n")

        def home(_request: Request) -> Reply:
            return Reply(
                HTTPStatus.FOUND, "text/plain", b"/console/\n", (("Location", "/console/"),)
            )

        routes = [
            Route("GET", "/", Access.OPEN, home),
            Route("GET", "/console", Access.OPEN, home),
            Route("GET", "/console/", Access.OPEN, asset("index.html")),
            Route("GET", "/console/data", Access.READ, data),
        ]
        routes += [Route("GET", f"/console/{n}", Access.OPEN, asset(n)) for n in ASSETS]
        return routes

    def data(self, status: WorkflowStatus) -> ConsoleData:
        """The page's figures from ``status`` (with its iteration rates)."""
        with self._lock:  # one graph for the whole answer, even while another adopts a newer
            newer = self._newer_plan() if self._newer_plan is not None else None
            if newer is not None:
                self._adopt(newer)
            return ConsoleData(
                graph=self.graph,
                loops=[self._loop(g.name, status) for g in self.graph.loops],
                queues=[self._queue(q.name, status) for q in self.graph.queues],
                status=status,
                history=self.history.history(),
                refresh_seconds=self.settings.refresh_seconds,
                managed_by_operator=self.settings.managed_by_operator,
            )

    def _loop(self, name: str, status: WorkflowStatus) -> LoopFigures:
        replicas = [lp for lp in status.loops if lp.name == name]
        states = [lp.state for lp in replicas]
        reasons = [lp.reason for lp in replicas]
        nodes = _nodes(replicas)
        producer = nodes.get(self._producers[name])
        breaker = None
        if name in self._breakers:
            opened = any(is_breaker_open(r) for r in reasons)
            breaker = "open" if opened else "closed"
        desired = {lp.desired_state for lp in replicas if lp.desired_state is not None}
        scaled = next((a for a in status.autoscale if a.loop == name), None)
        idle = not replicas and scaled is not None and scaled.current_replicas == 0
        return LoopFigures(
            name=name,
            state="idle" if idle else _loop_state(states, reasons),
            desired_state=next(iter(desired)).value if len(desired) == 1 else None,
            reason=next((r for r in reasons if r), None),
            replica_states=[lp.state.value for lp in replicas],
            iterations=sum(lp.iterations for lp in replicas),
            failed_iterations=sum(lp.failed_iterations for lp in replicas),
            iterations_per_second=self.history.loop_rate(name),
            missed_ticks=sum(n.missed_ticks for n in nodes.values()),
            late_ticks=producer.late_ticks if producer else 0,
            mean_lateness_seconds=producer.mean_lateness_seconds if producer else None,
            breaker=breaker,
            desired_replicas=scaled.desired_replicas if scaled else None,
            current_replicas=scaled.current_replicas if scaled else None,
            nodes=list(nodes.values()),
        )

    def _queue(self, name: str, status: WorkflowStatus) -> QueueFigures:
        found = next((q for q in status.queues if q.name == name), None)
        enqueued_rate, delivered_rate = self.history.queue_rates(name)
        return QueueFigures(
            name=name,
            depth=found.depth if found else 0,
            capacity=self._capacity[name],
            enqueued_per_second=enqueued_rate,
            delivered_per_second=delivered_rate,
            enqueued=found.enqueued if found else 0,
            delivered=found.delivered if found else 0,
            dropped=found.dropped if found else 0,
            redelivered=found.redelivered if found else 0,
            refused=found.refused if found else 0,
        )
