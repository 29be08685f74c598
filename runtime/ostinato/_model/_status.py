"""Loop and node state, and the status snapshots every pool reports in one JSON shape."""

from __future__ import annotations

import enum
from bisect import bisect_left

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ._spec import DesiredState

__all__ = [
    "DURATION_BUCKETS_SECONDS",
    "MAX_ERROR_CHARS",
    "AutoscaleStatus",
    "DurationHistogram",
    "Durations",
    "LoopState",
    "LoopStatus",
    "NodeHealth",
    "NodeStatus",
    "QueueStatus",
    "WorkflowStatus",
    "breaker_open_reason",
    "is_breaker_open",
    "is_lost",
    "lost_reason",
    "replica_key",
    "truncate",
]

#: Error texts in status are cut to this many characters so status stays small.
MAX_ERROR_CHARS = 500


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A loop's reason is text for people, but two of them are also read by programs (the console
# tells a lost loop and an open breaker by them): those are written and read only here.
_LOST = "lost: "
_BREAKER_OPEN = "circuit open "


def lost_reason(silent_seconds: float) -> str:
    """The reason of a loop whose replica stopped sending heartbeats."""
    return f"{_LOST}no heartbeat for {silent_seconds:.1f}s"


def breaker_open_reason(failures: int, cooldown_seconds: float) -> str:
    """The reason of a loop its circuit breaker paused."""
    return f"{_BREAKER_OPEN}after {failures} failed iterations; retry in {cooldown_seconds:g}s"


def is_lost(reason: str | None) -> bool:
    return reason is not None and reason.startswith(_LOST)


def is_breaker_open(reason: str | None) -> bool:
    return reason is not None and reason.startswith(_BREAKER_OPEN)


#: Upper bounds of the duration histograms' buckets, seconds (Prometheus ``le``; +Inf follows).
#: 1-3-10 steps from 1 µs, where a no-op node call is measured, to 60 s, beyond the longest
#: timeouts a node is expected to wait for: 18 series per histogram with +Inf.
DURATION_BUCKETS_SECONDS: tuple[float, ...] = (
    1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2,
    0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: The same bounds in nanoseconds, what :meth:`Durations.observe` compares with.
_BOUNDS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in DURATION_BUCKETS_SECONDS)


class DurationHistogram(BaseModel):
    """A duration histogram in status: counts per bucket of :data:`DURATION_BUCKETS_SECONDS`.

    ``counts[i]`` is the number of observations ``<= DURATION_BUCKETS_SECONDS[i]`` and above the
    bound before (not cumulative); the last entry counts those above the largest bound (+Inf).
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    counts: list[int] = Field(
        default_factory=lambda: [0] * (len(DURATION_BUCKETS_SECONDS) + 1),
        description="Observations per bucket (not cumulative), the last one above every bound.",
    )
    sum_seconds: float = Field(0.0, description="Sum of the observed durations, seconds.")

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations <= le)`` pairs, +Inf last: what a Prometheus histogram shows."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*DURATION_BUCKETS_SECONDS, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out

    def merged(self, other: DurationHistogram) -> DurationHistogram:
        """The sum of two histograms (replicas of one loop)."""
        return DurationHistogram(
            counts=[a + b for a, b in zip(self.counts, other.counts, strict=True)],
            sum_seconds=self.sum_seconds + other.sum_seconds,
        )


class Durations:
    """The engine's side of a duration histogram: integer counters, one writer thread.

    ``observe`` takes nanoseconds (``perf_counter_ns`` deltas) and does one bisection over 17
    integer bounds; the engine calls it only for the calls it samples (see the engine's
    ``_sampling``), never on every call of a fast loop.
    """

    __slots__ = ("counts", "sum_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_NS) + 1)
        self.sum_ns = 0

    def observe(self, ns: int) -> None:
        self.counts[bisect_left(_BOUNDS_NS, ns)] += 1
        self.sum_ns += ns

    def snapshot(self) -> DurationHistogram:
        return DurationHistogram(counts=list(self.counts), sum_seconds=self.sum_ns / 1e9)


class LoopState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    #: Ended by itself (maxIterations reached, or the producer exhausted): not to be restarted.
    FINISHED = "finished"


def replica_key(loop: str, replica: int) -> str:
    """How one replica of a loop is named where a single name is needed (tables, log lines,
    thread names): the loop's name for replica 0, ``name-N`` for replica N."""
    return loop if replica == 0 else f"{loop}-{replica}"


class NodeHealth(enum.StrEnum):
    HEALTHY = "healthy"
    RETRYING = "retrying"
    FAILING = "failing"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class NodeStatus(_Model):
    name: str
    kind: str
    health: NodeHealth = NodeHealth.HEALTHY
    calls: int = Field(0, description="Calls that finished, successful or failed after retries.")
    errors: int = Field(0, description="Calls that still failed after their retries.")
    retries: int = Field(0, description="Retry attempts made.")
    in_flight: int = Field(0, description="Non-blocking calls pending now.")
    dropped: int = Field(0, description="Non-blocking calls dropped because maxInFlight was full.")
    last_error: str | None = None
    counters: dict[str, int] = Field(default_factory=dict)
    duration: DurationHistogram = Field(
        default_factory=DurationHistogram,
        description="Durations of sampled call attempts (see docs/metrics.md).",
    )


class LoopStatus(_Model):
    name: str
    replica: int = Field(0, description="Which copy of the loop (spec.loops[].replicas).")
    pool: str
    state: LoopState = LoopState.PENDING
    desired_state: DesiredState | None = Field(
        None,
        description="What was last asked of the loop (its spec, POST /control, a pause, resume "
        "or stop call): running, paused or stopped; state is what it does. A pause or stop of "
        "its own (onError, the circuit breaker) shows in state and reason only. None where "
        "not known.",
    )
    reason: str | None = Field(None, description="Why the loop is in its state, when not obvious.")
    iterations: int = Field(0, description="Iterations finished (failed ones included).")
    iterations_per_second: float | None = Field(
        None,
        description="Over the last iterationsPerSecondWindow seconds: set by the HTTP server's "
        "/status from its own samples, None elsewhere and while it has no rate.",
    )
    iterations_per_second_window: float | None = Field(
        None, description="Seconds iterationsPerSecond covers."
    )
    failed_iterations: int = 0
    last_error: str | None = None
    restarts: int = Field(0, description="Process loops: times the process was restarted.")
    pid: int | None = None
    drained: int = Field(0, description="Non-blocking calls that finished during the stop drain.")
    abandoned: int = Field(0, description="Non-blocking calls still pending at the drain timeout.")
    iteration_duration: DurationHistogram = Field(
        default_factory=DurationHistogram,
        description="Durations of sampled iterations, from the producer's output to the end of "
        "the chain (see docs/metrics.md).",
    )
    nodes: list[NodeStatus] = Field(default_factory=list)

    def node(self, name: str) -> NodeStatus:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"loop {self.name!r} has no node {name!r}")


class QueueStatus(_Model):
    name: str
    depth: int = Field(0, description="Messages waiting in the fullest consumer group.")
    enqueued: int = 0
    delivered: int = 0
    acknowledged: int = 0
    dropped: int = 0
    redelivered: int = 0
    refused: int = Field(0, description="Messages refused (larger than maxMessageBytes).")
    in_flight: list[int] = Field(
        default_factory=list,
        description="Messages delivered and not yet acknowledged, per consumer (one number for "
        "each reader replica connected).",
    )


class AutoscaleStatus(_Model):
    """An autoscaled loop's replicas: what the last decision wants and what runs."""

    loop: str
    desired_replicas: int | None = Field(
        description="What the last decision asks for; None where this process does not decide "
        "(a hub run by the operator: the operator's status and /metrics have it)."
    )
    current_replicas: int = Field(
        description="Replicas running or starting (those being scaled away not counted)."
    )
    backlog: int = Field(0, description="The queue's messages waiting or in flight.")
    reason: str | None = Field(None, description="The numbers behind the last decision.")


class WorkflowStatus(_Model):
    workflow: str
    loops: list[LoopStatus]
    queues: list[QueueStatus] = Field(default_factory=list)
    autoscale: list[AutoscaleStatus] = Field(
        default_factory=list, description="Autoscaled loops (spec.loops[].autoscale) only."
    )

    def loop(self, name: str) -> LoopStatus:
        for loop in self.loops:
            if loop.name == name:
                return loop
        raise KeyError(f"workflow {self.workflow!r} has no loop {name!r}")
