"""CounterProducer: start/step/count values, in order, then the loop stops by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from ostinato import LoopState, WorkflowError, load_workflow

from .nodes import read_records
from .support import PROMPT, node, recorder, running, workflow

POOLS = ["thread", "asyncio", "process"]


@pytest.mark.parametrize("pool", POOLS)
def test_values_arrive_in_order_and_loop_stops_after_count(pool: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    doc = workflow(
        pool, node("count", "CounterProducer", start=5, step=3, count=7), [recorder(out)]
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT), "the loop did not stop by itself after count values"
        status = orch.loop("main").status()
    assert status.state is LoopState.FINISHED
    assert status.iterations == 7
    assert status.failed_iterations == 0
    assert status.node("count").calls == 7
    records = read_records(out)
    assert [r["payload"] for r in records] == [5, 8, 11, 14, 17, 20, 23]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert {r["loop"] for r in records} == {"main"}


def test_negative_step(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    doc = workflow(
        "thread", node("count", "CounterProducer", start=0, step=-2, count=4), [recorder(out)]
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
    assert [r["payload"] for r in read_records(out)] == [0, -2, -4, -6]


def test_count_zero_runs_no_iteration(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    doc = workflow("thread", node("count", "CounterProducer", count=0), [recorder(out)])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    assert status.state is LoopState.FINISHED
    assert status.iterations == 0
    assert read_records(out) == []


@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_without_count_runs_until_stopped(pool: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    doc = workflow(pool, node("count", "CounterProducer", start=1), [recorder(out)])
    with running(doc) as orch:
        handle = orch.loop("main")
        assert handle.wait_for(lambda s: s.iterations >= 200, PROMPT)
        assert not orch.done
        final = orch.stop(timeout=PROMPT)
    status = final.loop("main")
    assert status.state is LoopState.STOPPED
    payloads = [r["payload"] for r in read_records(out)]
    assert len(payloads) == status.iterations >= 200
    assert payloads == list(range(1, status.iterations + 1))


def test_negative_count_is_rejected_with_field_path() -> None:
    doc = workflow("thread", node("count", "CounterProducer", count=-1), [])
    with pytest.raises(WorkflowError) as info:
        load_workflow(doc)
    assert [e.path for e in info.value.errors] == ["spec.loops[0].producer.config.count"]
