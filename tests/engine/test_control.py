"""README's engine guarantees (5-6): pause, resume and stop from another thread, in every pool."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ostinato import LoopState

from .conftest import POOLS, loop, node, workflow
from .nodes import GATES, read, wait_line

WAIT = 20.0


def forever(journal: str, pool: str, *extra: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce"),
            node("a", "Step", "blocking", journal=journal, tag="a"),
            *extra,
            **settings,
        )
    )


@pytest.mark.parametrize("pool", POOLS)
def test_pause_takes_effect_at_the_boundary_and_resume_keeps_node_state(
    run: Any, journal: str, pool: str
) -> None:
    orch = run(forever(journal, pool))
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.iterations >= 5, WAIT)
    main.pause()
    assert main.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    paused = main.status()
    lines = read(journal)
    # Paused at a boundary: the last thing that happened is the end of a whole iteration.
    assert lines[-1].startswith(f"a end {paused.iterations} ")
    # Nothing runs while paused (a bounded look: a failure here is a real bug, not noise).
    assert not threading.Event().wait(0.3)
    assert read(journal) == lines
    assert main.status().iterations == paused.iterations
    main.resume()
    assert main.wait_for(lambda s: s.iterations >= paused.iterations + 5, WAIT)
    assert main.state is LoopState.RUNNING
    final = orch.stop()
    # The same node instances went on: 'a' counted every call across the pause.
    total = final.loop("main").iterations
    assert f"a teardown calls={total}" in read(journal)
    assert read(journal).count("a setup") == 1


@pytest.mark.parametrize("pool", POOLS)
def test_stop_finishes_the_iteration_drains_and_tears_down(
    run: Any, journal: str, pool: str
) -> None:
    fx = {
        **node("fx", "Effect", "nonBlocking", journal=journal, tag="fx", hold_seconds=0.05),
        "maxInFlight": 4,
    }
    orch = run(forever(journal, pool, fx))
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.iterations >= 3, WAIT)
    final = orch.stop().loop("main")
    assert final.state is LoopState.STOPPED
    lines = read(journal)
    started = [x for x in lines if x.startswith("fx start")]
    ended = [x for x in lines if x.startswith("fx end")]
    assert len(started) == len(ended) == final.node("fx").calls == final.iterations
    assert final.abandoned == 0
    teardowns = [i for i, x in enumerate(lines) if "teardown" in x]
    assert len(teardowns) == 3
    assert all(i < min(teardowns) for i, x in enumerate(lines) if x.startswith(("fx end", "a end")))
    # Every iteration that started, finished.
    assert lines.count(f"produce {final.iterations}") == 1
    assert f"a end {final.iterations} payload={final.iterations}" in lines


@pytest.mark.parametrize("pool", POOLS)
def test_drain_timeout_abandons_stuck_side_effects_and_still_tears_down(
    run: Any, journal: str, pool: str
) -> None:
    fx = {
        **node(
            "fx",
            "Effect",
            "nonBlocking",
            journal=journal,
            tag="fx",
            wait_for="never happens",
            wait_timeout=5,
        ),
        "maxInFlight": 2,
        "onFull": "drop",
    }
    orch = run(forever(journal, pool, fx, drainTimeoutSeconds=0.3))
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.iterations >= 3, WAIT)
    final = orch.stop(timeout=WAIT).loop("main")
    assert final.state is LoopState.STOPPED
    assert final.abandoned == 2
    assert "fx teardown peak=2" in read(journal)


@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_stop_while_a_blocking_node_runs_waits_for_it(run: Any, journal: str, pool: str) -> None:
    gate = GATES.setdefault(f"stop-{pool}", threading.Event())
    gate.clear()
    doc = workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce"),
            node("slow", "Step", "blocking", journal=journal, tag="slow", gate=f"stop-{pool}"),
        )
    )
    orch = run(doc)
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.state is LoopState.RUNNING, WAIT)
    main.stop()
    assert main.wait_for_state(LoopState.STOPPED, timeout=0.2) is False  # held by the node
    gate.set()
    assert main.wait_for_state(LoopState.STOPPED, timeout=WAIT)
    assert read(journal)[-2] == "slow teardown calls=1"


@pytest.mark.parametrize("pool", POOLS)
def test_pause_whole_workflow_and_stop_while_paused(run: Any, journal: str, pool: str) -> None:
    doc = workflow(
        loop("one", pool, node("p", "Count", journal=journal, tag="one")),
        loop("two", "thread", node("p", "Count", journal=journal, tag="two")),
    )
    orch = run(doc)
    for handle in orch.loops.values():
        assert handle.wait_for(lambda s: s.iterations >= 2, WAIT)
    orch.pause()
    for handle in orch.loops.values():
        assert handle.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    final = orch.stop()
    assert {lp.state for lp in final.loops} == {LoopState.STOPPED}


def test_stop_before_the_first_iteration(run: Any, journal: str) -> None:
    orch = run(forever(journal, "thread"))
    orch.stop()
    assert orch.status().loop("main").state is LoopState.STOPPED
    assert "produce teardown" in read(journal)


def test_interval_producer_wakes_for_pause_and_stop(run: Any, journal: str) -> None:
    doc = workflow(
        loop(
            "main",
            "thread",
            {"name": "tick", "class": "IntervalProducer", "config": {"periodSeconds": 3600}},
            node("a", "Step", "blocking", journal=journal, tag="a"),
        )
    )
    orch = run(doc)
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.iterations == 1, WAIT)  # the first tick is immediate
    main.pause()
    assert main.wait_for_state(LoopState.PAUSED, timeout=5)  # not an hour
    main.stop()
    assert main.wait_for_state(LoopState.STOPPED, timeout=5)


@pytest.mark.parametrize("pool", POOLS)
def test_stop_is_not_held_forever_by_a_full_non_blocking_node(
    run: Any, journal: str, pool: str
) -> None:
    # One slot, held by a side effect that would take 30 s: iteration 2 waits for the slot.
    # A stop waits the drain timeout for it, then abandons that call and the pending one.
    fx = {
        **node(
            "fx",
            "Effect",
            "nonBlocking",
            journal=journal,
            tag="fx",
            wait_for="never happens",
            wait_timeout=30,
        ),
        "maxInFlight": 1,
        "onFull": "block",
    }
    orch = run(forever(journal, pool, fx, drainTimeoutSeconds=0.3))
    # Iteration 2 has passed 'a' and now waits for fx's slot.
    assert wait_line(journal, "a end 2 payload=2", WAIT)
    final = orch.stop(timeout=WAIT).loop("main")
    assert "fx start 2" not in read(journal)
    assert final.state is LoopState.STOPPED
    assert final.abandoned == 2  # the call waiting for a slot, and the one holding it
    assert "fx teardown peak=1" in read(journal)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("ending", ["maxIterations", "exhausted"])
def test_a_loop_that_ends_by_itself_is_finished_not_stopped(
    run: Any, journal: str, pool: str, ending: str
) -> None:
    """Finished (not to be started again) and stopped (as asked) are different endings."""
    limit = {"maxIterations": 7} if ending == "maxIterations" else {}
    producer = node("p", "Count", journal=journal, tag="produce")
    if ending == "exhausted":
        producer["config"]["count"] = 7
    orch = run(
        workflow(
            loop(
                "main",
                pool,
                producer,
                node("a", "Step", "blocking", journal=journal, tag="a"),
                **limit,
            )
        )
    )
    main = orch.loop("main")
    assert main.wait_for_state(LoopState.FINISHED, timeout=WAIT)
    final = main.status()
    assert final.iterations == 7
    expected = "limit of 7 iteration" if ending == "maxIterations" else "producer is exhausted"
    assert final.reason is not None
    assert expected in final.reason, final.reason
    assert "drained" in final.reason
    # The orchestrator does not mistake it for a loop that was stopped.
    assert orch.stop().loop("main").state is LoopState.FINISHED
