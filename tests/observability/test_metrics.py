"""Metric families from hand-made status snapshots, and the iteration rate's window."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ostinato import LoopState, LoopStatus, NodeHealth, NodeStatus, WorkflowStatus
from ostinato._model._status import QueueStatus
from ostinato._observe._http import IterationRates
from ostinato._observe._metrics import LOOP_STATE_VALUES, NODE_HEALTH_VALUES, metrics_registry


def replica(
    n: int, state: LoopState, iterations: int, health: NodeHealth, *, missed: int = 0
) -> LoopStatus:
    return LoopStatus(
        name="work",
        replica=n,
        pool="process",
        state=state,
        iterations=iterations,
        failed_iterations=1,
        restarts=n,
        nodes=[
            NodeStatus(
                name="src", kind="producer", calls=iterations, counters={"missedTicks": missed}
            ),
            NodeStatus(name="step", kind="blocking", calls=iterations, errors=1, health=health),
            NodeStatus(name="fx", kind="nonBlocking", in_flight=2, dropped=3),
        ],
    )


def samples(status: WorkflowStatus) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics_registry(lambda: status, version="9.9.9")).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({"workflow": "w", **labels}.items())


def test_replicas_are_summed_and_gauges_take_the_worst_replica() -> None:
    status = WorkflowStatus(
        workflow="w",
        loops=[
            replica(0, LoopState.RUNNING, 10, NodeHealth.HEALTHY, missed=4),
            replica(1, LoopState.ERROR, 5, NodeHealth.FAILING, missed=1),
            replica(2, LoopState.PAUSED, 1, NodeHealth.RETRYING),
        ],
        queues=[QueueStatus(name="q", depth=7, enqueued=9, refused=2)],
    )
    got = samples(status)
    assert got[key("ostinato_build_info", version="9.9.9")] == 1
    assert got[key("ostinato_iterations_total", loop="work")] == 16
    assert got[key("ostinato_failed_iterations_total", loop="work")] == 3
    assert got[key("ostinato_loop_restarts_total", loop="work")] == 0 + 1 + 2
    assert got[key("ostinato_loop_replicas", loop="work")] == 3
    assert got[key("ostinato_loop_state", loop="work")] == LOOP_STATE_VALUES[LoopState.ERROR]
    assert got[key("ostinato_node_calls_total", loop="work", node="step")] == 16
    assert got[key("ostinato_node_errors_total", loop="work", node="step")] == 3
    assert got[key("ostinato_node_health", loop="work", node="step")] == 2
    assert got[key("ostinato_node_in_flight", loop="work", node="fx")] == 6
    assert got[key("ostinato_node_dropped_total", loop="work", node="fx")] == 9
    assert got[key("ostinato_missed_ticks_total", loop="work", node="src")] == 5
    # Only producers have a missed-ticks series.
    assert key("ostinato_missed_ticks_total", loop="work", node="step") not in got
    assert got[key("ostinato_queue_depth", queue="q")] == 7
    assert got[key("ostinato_queue_enqueued_total", queue="q")] == 9
    assert got[key("ostinato_queue_refused_total", queue="q")] == 2
    assert got[key("ostinato_queue_redelivered_total", queue="q")] == 0


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([LoopState.RUNNING, LoopState.STOPPED], LoopState.RUNNING),
        ([LoopState.PAUSED, LoopState.RUNNING], LoopState.PAUSED),
        ([LoopState.RUNNING, LoopState.PENDING], LoopState.PENDING),
        ([LoopState.STOPPED, LoopState.STOPPED], LoopState.STOPPED),
        ([LoopState.STOPPING, LoopState.STOPPED], LoopState.STOPPING),
    ],
)
def test_the_loop_state_of_several_replicas(states: list[LoopState], expected: LoopState) -> None:
    status = WorkflowStatus(
        workflow="w",
        loops=[replica(n, s, 0, NodeHealth.HEALTHY) for n, s in enumerate(states)],
    )
    assert samples(status)[key("ostinato_loop_state", loop="work")] == LOOP_STATE_VALUES[expected]


def test_the_enum_mappings_cover_every_value() -> None:
    assert set(LOOP_STATE_VALUES) == set(LoopState)
    assert sorted(LOOP_STATE_VALUES.values()) == list(range(len(LoopState)))
    assert set(NODE_HEALTH_VALUES) == set(NodeHealth)


def at(iterations: int, n: int = 0, state: LoopState = LoopState.RUNNING) -> WorkflowStatus:
    loop = LoopStatus(name="l", replica=n, pool="thread", iterations=iterations, state=state)
    return WorkflowStatus(workflow="w", loops=[loop])


def test_the_rate_is_over_the_oldest_sample_of_the_window() -> None:
    rates = IterationRates(window=10.0, sample_every=1.0)
    rates.sample(at(0), now=100.0)
    assert rates.rate("l", 0, 5, now=100.5) == (None, None)  # younger than one sample period
    for t in range(1, 15):
        rates.sample(at(20 * t), now=100.0 + t)
    # At 115.5 the samples of the last 10 s are those from 106 on: 120 iterations then.
    rate, window = rates.rate("l", 0, 300, now=115.5)
    assert window == pytest.approx(9.5)
    assert rate == pytest.approx((300 - 120) / 9.5)
    assert rates.rate("other", 0, 1, now=115.5) == (None, None)


def test_a_counter_reset_starts_the_window_again() -> None:
    rates = IterationRates(window=10.0, sample_every=1.0)
    rates.sample(at(500), now=0.0)
    rates.sample(at(600), now=1.0)
    rates.sample(at(3), now=2.0)  # the process loop was restarted: it counts from zero
    assert rates.rate("l", 0, 4, now=2.5) == (None, None)
    rate, window = rates.rate("l", 0, 53, now=3.0)
    assert (rate, window) == (50.0, 1.0)
    with pytest.raises(ValueError, match="sample_every"):
        IterationRates(window=1.0, sample_every=2.0)


def test_a_replica_a_restarted_hub_has_not_heard_from_yet_is_no_base_for_a_rate() -> None:
    """After a hub restart a 20/s loop read 2,936/s for one round: its placeholder 0, then its
    whole count at its first report."""
    rates = IterationRates(window=10.0, sample_every=1.0)
    rates.sample(at(0, state=LoopState.PENDING), now=0.0)  # not connected to the new hub yet
    rates.sample(at(0, state=LoopState.PENDING), now=1.0)
    rates.sample(at(5000), now=2.0)  # its first report: 250 s of iterations at 20/s
    assert rates.rate("l", 0, 5000, now=2.5) == (None, None)
    rate, window = rates.rate("l", 0, 5020, now=3.0)
    assert (rate, window) == (20.0, 1.0)
