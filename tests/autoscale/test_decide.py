"""The autoscaling decision as a pure function, over traces: a burst, a slow leak, a sawtooth,
an idle queue and a consumer that stalls. The closed-loop traces come from a small queue model
(arrivals, a capacity per replica, prefetch) whose replicas follow each decision at once."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from ostinato.lowlevel import AutoscaleSpec, BacklogSample, ScaleState, decide


def spec(**fields: float) -> AutoscaleSpec:
    return AutoscaleSpec.model_validate(
        {"maxReplicas": 4, "minReplicas": 1, "targetBacklogPerReplica": 100, **fields}
    )


@dataclass
class Step:
    at: float
    desired: int
    backlog: int
    reason: str


def simulate(
    settings: AutoscaleSpec,
    arrivals: Callable[[int], int],
    seconds: int,
    *,
    per_replica: int = 100,
    prefetch: int = 4,
    start: int = 1,
) -> list[Step]:
    """Each second: messages arrive, each replica does up to ``per_replica``, each holds up to
    ``prefetch`` in flight; then the decision is sampled and the replicas become ``desired``."""
    waiting = enqueued = acknowledged = 0
    replicas, state = start, None
    steps = []
    for t in range(seconds):
        new = arrivals(t)
        waiting += new
        enqueued += new
        done = min(waiting, replicas * per_replica)
        waiting -= done
        acknowledged += done
        held = [min(prefetch, waiting // replicas) if replicas else 0 for _ in range(replicas)]
        sample = BacklogSample(float(t), waiting - sum(held), enqueued, acknowledged, tuple(held))
        decision = decide(settings, sample, replicas, state)
        state = decision.state
        steps.append(Step(float(t), decision.desired, decision.backlog, decision.reason))
        replicas = decision.desired
    return steps


def changes(steps: list[Step]) -> list[tuple[float, int, int]]:
    """(when, from, to) of every change of desired."""
    out = []
    for before, after in itertools.pairwise(steps):
        if after.desired != before.desired:
            out.append((after.at, before.desired, after.desired))
    return out


def test_a_burst_scales_to_max_at_once_drains_and_returns_after_the_delay() -> None:
    settings = spec(scaleDownDelaySeconds=30)
    steps = simulate(settings, lambda t: 20_000 if t == 0 else 0, 200, start=1)
    assert steps[0].desired == 4  # 20,000 waiting, 100 per replica: as many as allowed
    drained = next(s.at for s in steps if s.backlog == 0)
    assert drained == 50  # 4 replicas at 100/s
    last_full = max(s.at for s in steps if s.backlog > 300)  # the last time it wanted 4
    history = changes(steps)
    assert history[0][0] >= last_full + 30  # held through the delay
    assert [c[2] for c in history] == sorted((c[2] for c in history), reverse=True)  # only down
    assert history[-1][2] == 1
    assert history[-1][0] <= drained + 30  # the delay counts from when it last wanted more
    assert max(s.desired for s in steps) == 4


def test_a_slow_leak_adds_replicas_one_step_at_a_time_and_never_flaps() -> None:
    settings = spec(scaleDownDelaySeconds=30, scaleUpCooldownSeconds=5)
    # 105 messages a second against 100 a replica: the backlog grows 5 a second on one
    steps = simulate(settings, lambda t: 105, 600, start=1)
    assert max(s.desired for s in steps) == 2
    ups = [c for c in changes(steps) if c[2] > c[1]]
    assert ups[0][0] >= 19  # not before 100 messages have piled up
    # every scale-down comes at least the delay after the change before it
    history = changes(steps)
    for (t0, _, _), (t1, a, b) in itertools.pairwise(history):
        if b < a:
            assert t1 - t0 >= 30
    assert len(history) <= 2 * 600 // (30 + 19) + 1


def test_a_sawtooth_shorter_than_the_delay_holds_its_peak() -> None:
    settings = spec(scaleDownDelaySeconds=30)
    steps = simulate(settings, lambda t: 1_000 if t % 10 == 0 else 0, 300, start=1)
    assert changes(steps) == [(0.0, 1, 4)] or changes(steps) == []
    assert steps[0].desired == 4
    assert all(s.desired == 4 for s in steps)


def test_an_idle_queue_returns_to_min_within_the_delay_plus_one_interval() -> None:
    for minimum in (0, 1):
        settings = spec(minReplicas=minimum, scaleDownDelaySeconds=10)
        steps = simulate(settings, lambda t: 0, 30, start=3)
        assert changes(steps) == [(10.0, 3, minimum)], minimum
        assert steps[-1].desired == minimum


def test_scale_from_zero_ignores_the_cooldown() -> None:
    settings = spec(minReplicas=0, scaleUpCooldownSeconds=600, scaleDownDelaySeconds=0)
    state = ScaleState(desired=0, scaled_up_at=0.0)
    first = decide(settings, BacklogSample(1.0, 1, 1, 0), 0, state)
    assert (first.desired, first.changed) == (1, True)
    assert "backlog 1 (1 waiting, 0 in flight)" in first.reason


def test_the_cooldown_spaces_scale_ups() -> None:
    settings = spec(scaleUpCooldownSeconds=5, maxReplicas=8)
    d = decide(settings, BacklogSample(0.0, 200, 200, 0), 1, None)
    assert d.desired == 2
    d = decide(settings, BacklogSample(1.0, 800, 800, 0), 2, d.state)
    assert (d.desired, d.wanted) == (2, 8)
    assert "cooldown" in d.reason
    d = decide(settings, BacklogSample(5.0, 800, 800, 0), 2, d.state)
    assert d.desired == 8


# A recorded trace: (seconds, depth, enqueued, acknowledged, in flight per consumer). One
# consumer takes 4 messages and stops acknowledging at t=3; the backlog piles up behind it.
STALL = [
    (0, 0, 10, 10, (0,)),
    (1, 0, 20, 20, (0,)),
    (2, 0, 30, 26, (4,)),
    (3, 50, 80, 26, (4,)),
    (4, 400, 430, 26, (4,)),
    (5, 0, 430, 426, (4, 0)),
    (6, 0, 430, 426, (4, 0)),
    (40, 0, 430, 426, (4, 0)),
    (80, 0, 430, 426, (4, 0)),
    (81, 0, 430, 430, (0, 0)),
    (111, 0, 430, 430, (0, 0)),
]


def test_a_stalled_consumer_gets_help_and_is_not_scaled_away() -> None:
    settings = spec(scaleDownDelaySeconds=30, scaleUpCooldownSeconds=0)
    state, seen = None, []
    for at, depth, enq, ack, flight in STALL:
        d = decide(settings, BacklogSample(float(at), depth, enq, ack, flight), 1, state)
        state = d.state
        seen.append((at, d.desired))
    desired = dict(seen)
    assert desired[4] == 4  # 404 messages behind a stalled consumer: more replicas
    # held: messages in flight, none acknowledged
    assert desired[40] == desired[80] == 4
    # acknowledged again, and the backlog has wanted one replica for longer than the delay
    assert desired[81] == desired[111] == 1


def test_restarted_hub_counters_are_no_traffic() -> None:
    settings = spec(minReplicas=0, scaleDownDelaySeconds=0)
    d = decide(settings, BacklogSample(0.0, 0, 5_000, 5_000), 1, None)
    d = decide(settings, BacklogSample(1.0, 0, 0, 0), 1, d.state)
    assert (d.enqueue_rate, d.ack_rate, d.desired) == (0.0, 0.0, 0)


def test_a_trickle_keeps_one_replica() -> None:
    settings = spec(minReplicas=0, scaleDownDelaySeconds=0)
    d = decide(settings, BacklogSample(0.0, 0, 0, 0), 1, None)
    d = decide(settings, BacklogSample(1.0, 0, 3, 3), 1, d.state)
    assert d.desired == 1  # nothing waits, but messages keep coming


def test_bounds_changed_in_the_spec_apply_at_once() -> None:
    d = decide(spec(maxReplicas=4), BacklogSample(0.0, 1_000, 1_000, 0), 1, None)
    assert d.desired == 4
    lowered = decide(spec(maxReplicas=2), BacklogSample(1.0, 1_000, 1_000, 0), 4, d.state)
    assert (lowered.previous, lowered.desired, lowered.changed) == (4, 2, True)
    raised = decide(spec(minReplicas=3), BacklogSample(2.0, 0, 1_000, 1_000), 2, lowered.state)
    assert raised.desired == 3
