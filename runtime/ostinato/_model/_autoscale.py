"""The one autoscaling decision both hosts make: a queue's backlog and the time to a replica count.

Pure: no clock, no I/O. The orchestrator of `ostinato run` and the operator each sample the
hub's status of the queue an autoscaled loop reads, call :func:`decide` with the state it
returned last time, and start or stop replicas until the loop has ``desired`` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._spec import AutoscaleSpec
from ._status import QueueStatus

__all__ = ["BacklogSample", "ScaleDecision", "ScaleState", "decide", "sample_of"]


@dataclass(frozen=True, slots=True)
class BacklogSample:
    """What the hub says of one work queue at one moment."""

    #: When it was read, seconds on a monotonic clock of the caller's.
    at_seconds: float
    #: Messages waiting in the hub, not delivered yet.
    depth: int
    #: The queue's counters since the hub started (rates come from two samples).
    enqueued: int
    acknowledged: int
    #: Messages delivered and not yet acknowledged, per consumer (reader replica).
    in_flight: tuple[int, ...] = ()

    @property
    def backlog(self) -> int:
        """Messages not yet done: waiting plus in flight."""
        return self.depth + sum(self.in_flight)


def sample_of(queue: QueueStatus, at_seconds: float) -> BacklogSample:
    """A queue's status (``/status``'s ``queues[]``) as a sample taken at ``at_seconds``."""
    return BacklogSample(
        at_seconds, queue.depth, queue.enqueued, queue.acknowledged, tuple(queue.in_flight)
    )


@dataclass(frozen=True, slots=True)
class ScaleState:
    """What a decision remembers for the next one."""

    desired: int
    #: When the last scale-up was decided (None: never), for the cool-down.
    scaled_up_at: float | None = None
    #: When the first sample was taken: no scale-down before a whole delay has been seen.
    started_at: float | None = None
    #: (seconds, replicas wanted) of the samples within the scale-down delay, oldest first.
    recent: tuple[tuple[float, int], ...] = ()
    #: The previous sample, for the rates.
    last: BacklogSample | None = None


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    desired: int
    #: What was desired before this decision.
    previous: int
    #: Pass it to the next call.
    state: ScaleState
    #: The replicas the backlog alone asks for, within minReplicas..maxReplicas.
    wanted: int
    backlog: int
    #: Messages per second since the previous sample (0 on the first).
    enqueue_rate: float
    ack_rate: float
    #: One line with the numbers behind the decision (for logs and Kubernetes Events).
    reason: str

    @property
    def changed(self) -> bool:
        return self.desired != self.previous


def decide(
    spec: AutoscaleSpec, sample: BacklogSample, current: int, state: ScaleState | None
) -> ScaleDecision:
    """The replicas a loop should run, given its queue now and what was decided before.

    ``current``: the replicas running now (the first call starts from it). Up: at once to what
    the backlog wants (``ceil(backlog / targetBacklogPerReplica)``, at least one while messages
    wait or arrive), then not again for ``scaleUpCooldownSeconds`` unless from zero. Down: only
    once the backlog has wanted fewer for ``scaleDownDelaySeconds``, to the most it wanted over
    that time (the most wanted over the last delay, so replicas go as the backlog's peak
    leaves the window), and not while messages are in flight and none was acknowledged since
    the last sample (a stalled consumer).
    """
    if state is None:
        state = ScaleState(desired=spec.bounded(current))
    before = state.desired
    now = sample.at_seconds
    last = state.last
    enqueue_rate = ack_rate = 0.0
    acked_since = None
    if last is not None and now > last.at_seconds:
        elapsed = now - last.at_seconds
        # a restarted hub starts its counters over: a negative difference is no traffic
        enqueue_rate = max(sample.enqueued - last.enqueued, 0) / elapsed
        acked_since = max(sample.acknowledged - last.acknowledged, 0)
        ack_rate = acked_since / elapsed
    backlog = sample.backlog
    raw = math.ceil(backlog / spec.target_backlog_per_replica)
    if raw == 0 and enqueue_rate > 0:
        raw = 1  # messages arrive and leave at once: one replica keeps up with them
    wanted = spec.bounded(raw)
    stalled = sum(sample.in_flight) > 0 and acked_since == 0
    delay = spec.scale_down_delay_seconds
    started_at = state.started_at if state.started_at is not None else now
    recent = (*((at, n) for at, n in state.recent if at >= now - delay), (now, wanted))
    # a spec changed since (maxReplicas lowered, minReplicas raised) applies at once
    desired, scaled_up_at = spec.bounded(before), state.scaled_up_at
    why = "holds" if desired == before else "follows the spec's bounds"
    if wanted > desired:
        cooling = (
            before > 0
            and scaled_up_at is not None
            and now - scaled_up_at < spec.scale_up_cooldown_seconds
        )
        if cooling:
            why = f"holds (scale-up cooldown of {spec.scale_up_cooldown_seconds:g}s)"
        else:
            desired, scaled_up_at, why = wanted, now, "scales up"
    elif wanted < desired:
        # the most wanted over the delay: a backlog that comes back within it keeps its replicas
        stable = max(n for _, n in recent)
        if stalled:
            why = "holds (messages in flight, none acknowledged: a consumer stalls)"
        elif now - started_at < delay or stable >= desired:
            why = f"holds (scale-down delay of {delay:g}s)"
        else:
            desired, why = stable, "scales down"
    reason = (
        f"backlog {backlog} ({sample.depth} waiting, {sum(sample.in_flight)} in flight), "
        f"target {spec.target_backlog_per_replica} per replica: wants {wanted} "
        f"(of {spec.min_replicas}..{spec.max_replicas}), {current} running; {why} to "
        f"{desired}; enqueued {enqueue_rate:.1f}/s, acknowledged {ack_rate:.1f}/s"
    )
    new_state = ScaleState(desired, scaled_up_at, started_at, recent, sample)
    return ScaleDecision(
        desired, before, new_state, wanted, backlog, enqueue_rate, ack_rate, reason
    )
