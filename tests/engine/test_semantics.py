"""README's engine guarantees (1-4) in every pool: who waits for whom, what data flows where."""

from __future__ import annotations

from typing import Any

import pytest

from ostinato import LoopState

from .conftest import POOLS, loop, node, workflow
from .nodes import read

FLAVOURS = [("Step", "Count"), ("AsyncStep", "AsyncCount")]


def positions(lines: list[str]) -> dict[str, int]:
    return {line.split(" payload=")[0]: i for i, line in enumerate(lines)}


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize(("step", "count"), FLAVOURS, ids=["sync", "async"])
def test_blocking_chain_runs_in_order_and_the_producer_waits(
    run: Any, journal: str, pool: str, step: str, count: str
) -> None:
    doc = workflow(
        loop(
            "main",
            pool,
            node("p", count, journal=journal, tag="produce", count=20),
            node("a", step, "blocking", journal=journal, tag="a"),
            node("b", step, "blocking", journal=journal, tag="b"),
        )
    )
    orch = run(doc)
    assert orch.wait(timeout=30)
    status = orch.status().loop("main")
    assert status.state is LoopState.FINISHED
    assert status.iterations == 20
    lines = read(journal)
    at = positions(lines)
    for i in range(1, 21):
        assert at[f"produce {i}"] < at[f"a start {i}"] < at[f"a end {i}"]
        assert at[f"a end {i}"] < at[f"b start {i}"] < at[f"b end {i}"]
        if i < 20:
            assert at[f"b end {i}"] < at[f"produce {i + 1}"], "next iteration began early"
    assert status.node("a").calls == 20
    assert status.node("b").calls == 20
    # Teardown comes after the last iteration, for every node.
    assert lines[-3:] == ["b teardown calls=20", "a teardown calls=20", "produce teardown"]


@pytest.mark.parametrize("pool", POOLS)
def test_return_value_becomes_payload_with_the_iteration_metadata(
    run: Any, journal: str, pool: str
) -> None:
    doc = workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce", count=3),
            node("t", "Tag", "blocking", journal=journal, tag="x"),
            node("b", "Step", "blocking", journal=journal, tag="b"),
        )
    )
    orch = run(doc)
    assert orch.wait(timeout=30)
    ends = [line for line in read(journal) if line.startswith("b end")]
    assert ends == [f"b end {i} payload=x({i})" for i in (1, 2, 3)]


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("effect", ["Effect", "AsyncEffect"])
def test_non_blocking_never_holds_up_the_loop(
    run: Any, journal: str, pool: str, effect: str
) -> None:
    # The side effect of iteration 1 finishes only once the producer has reached iteration 6:
    # if the loop waited for it, the loop would never get there.
    doc = workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce", count=6),
            node(
                "fx",
                effect,
                "nonBlocking",
                journal=journal,
                tag="fx",
                wait_for="produce 6",
                wait_timeout=20,
            ),
            node("b", "Step", "blocking", journal=journal, tag="b"),
        )
    )
    orch = run(doc)
    assert orch.wait(timeout=30)
    lines = read(journal)
    at = positions(lines)
    assert at["produce 6"] < at["fx end 1"]
    assert at["b end 1"] < at["fx end 1"], "the chain went on while the side effect ran"
    status = orch.status().loop("main")
    assert status.node("fx").calls == 6
    assert status.node("fx").errors == 0
    # Side effects drained before teardown.
    teardown = next(i for i, line in enumerate(lines) if line.startswith("fx teardown"))
    assert all(i < teardown for i, line in enumerate(lines) if line.startswith("fx end"))


@pytest.mark.parametrize("pool", POOLS)
def test_max_in_flight_block_bounds_concurrency_and_loses_nothing(
    run: Any, journal: str, pool: str
) -> None:
    doc = workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce", count=30),
            {
                **node(
                    "fx", "Effect", "nonBlocking", journal=journal, tag="fx", hold_seconds=0.005
                ),
                "maxInFlight": 2,
                "onFull": "block",
            },
            sideEffectWorkers=8,
        )
    )
    orch = run(doc)
    assert orch.wait(timeout=30)
    status = orch.status().loop("main")
    fx = status.node("fx")
    assert (fx.calls, fx.dropped, fx.in_flight) == (30, 0, 0)
    lines = read(journal)
    assert sorted(int(x.split()[2]) for x in lines if x.startswith("fx end")) == list(range(1, 31))
    peak = next(int(x.split("=")[1]) for x in lines if x.startswith("fx teardown"))
    assert 1 <= peak <= 2


@pytest.mark.parametrize("pool", POOLS)
def test_max_in_flight_drop_counts_exactly_what_it_drops(run: Any, journal: str, pool: str) -> None:
    # One slot; the first call holds it until the producer reached 10: calls 2..10 are dropped
    # (or a few more if the slot is still busy), and calls + dropped == iterations.
    doc = workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce", count=10),
            {
                **node(
                    "fx", "Effect", "nonBlocking", journal=journal, tag="fx", wait_for="produce 10"
                ),
                "maxInFlight": 1,
                "onFull": "drop",
            },
        )
    )
    orch = run(doc)
    assert orch.wait(timeout=30)
    fx = orch.status().loop("main").node("fx")
    ran = [x for x in read(journal) if x.startswith("fx end")]
    assert fx.calls == len(ran)
    assert fx.calls + fx.dropped == 10
    assert fx.dropped >= 8  # iterations 2..9 at least found the slot taken
