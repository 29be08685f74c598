"""Autoscaling in `ostinato run`, in every pool: a burst into a minReplicas 0 loop scales it up,
every message is processed (duplicates counted: none in a clean scale-down), the loop returns
to zero, and a message written then starts a replica again. Nodes from tests/hub/nodes.py
journal what they process, so process replicas are checked like the others."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ostinato import DesiredState, LoopState, WorkflowOrchestrator
from tests.hub.conftest import loop, node, queue, reader, records, until, workflow, writer
from tests.hub.nodes import read

BURST = 400


def scaled(orch: WorkflowOrchestrator) -> tuple[int, int]:
    """(desired, current) replicas of the autoscaled loop, from the orchestrator's status."""
    [a] = orch.status().autoscale
    return a.desired_replicas, a.current_replicas


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("pool", ["thread", "asyncio", "process"])
def test_burst_scales_up_drains_returns_to_zero_and_back(
    tmp_path: Path, pool: str, run: Callable[..., WorkflowOrchestrator]
) -> None:
    journal, effects = tmp_path / "got.log", tmp_path / "effects.log"
    go, late = tmp_path / "go", tmp_path / "late"
    doc = workflow(
        loop(
            "burst",
            "thread",
            node("count", "GoCounter", count=BURST, go=str(go)),
            writer("put", "jobs"),
        ),
        loop(
            "late",
            "thread",
            node("count", "GoCounter", count=1, go=str(late)),
            node("shift", "tests.autoscale.nodes:Shift", "blocking", by=BURST),
            writer("put", "jobs"),
        ),
        loop(
            "work",
            pool,
            reader("take", "jobs", prefetch=4),
            node("slow", "Slow", "blocking", seconds=0.01, first=10**9),
            node("record", "Record", "blocking", journal=str(journal)),
            node(
                "effect",
                "tests.autoscale.nodes:LateJournal",
                "nonBlocking",
                journal=str(effects),
                seconds=0.05,
            ),
            autoscale={
                "minReplicas": 0,
                "maxReplicas": 3,
                "targetBacklogPerReplica": 20,
                "scaleUpCooldownSeconds": 0,
                "scaleDownDelaySeconds": 0.5,
                "intervalSeconds": 0.1,
            },
        ),
        queues=[queue("jobs", mode="work", capacity=10_000)],
        name="autoscale",
    )
    orch = run(doc)
    assert orch.replicas("work") == []  # minReplicas 0 and nothing written: none runs
    assert scaled(orch) == (0, 0)

    go.touch()  # the burst: BURST messages at once
    peak = 0

    def drained() -> bool:
        nonlocal peak
        peak = max(peak, scaled(orch)[1])
        return len(records(journal)) >= BURST

    assert until(drained, timeout=150), (len(records(journal)), orch.status().autoscale)
    assert peak > 1, "the burst did not scale the loop beyond one replica"
    assert until(lambda: scaled(orch) == (0, 0) and not orch.replicas("work"), timeout=60), (
        orch.status().autoscale
    )
    seen = Counter(n for n, *_ in records(journal))
    assert set(seen) == set(range(BURST)), "a message of the burst was not processed"
    duplicates = sum(c - 1 for c in seen.values())
    assert duplicates == 0, f"{duplicates} duplicate(s) in a clean scale-down"
    # each retired replica drained its side effects before it stopped
    drained_effects = Counter(int(line) for line in read(effects))
    assert drained_effects == Counter(range(BURST)), "a side effect was lost at a scale-down"

    started = time.monotonic()
    late.touch()  # one message into a loop at zero replicas starts one
    assert until(lambda: BURST in {n for n, *_ in records(journal)}, timeout=60)
    first_message_seconds = time.monotonic() - started
    print(f"{pool}: first message after zero processed in {first_message_seconds:.2f}s")
    # acknowledged once its iteration has ended, after the journal has it
    assert until(lambda: orch.status().queues[0].acknowledged == BURST + 1, timeout=30), (
        orch.status().queues[0]
    )
    assert orch.loop("burst").state is LoopState.FINISHED


@pytest.mark.timeout(120)
def test_a_paused_autoscaled_loop_stays_paused_as_it_scales(
    tmp_path: Path, run: Callable[..., WorkflowOrchestrator]
) -> None:
    """New replicas of a paused loop start paused: a scale-up never undoes a pause."""
    go = tmp_path / "go"
    doc = workflow(
        loop("burst", "thread", node("count", "GoCounter", count=100, go=str(go)),
             writer("put", "jobs")),
        loop(
            "work",
            "thread",
            reader("take", "jobs"),
            node("record", "Record", "blocking", journal=str(tmp_path / "got.log")),
            autoscale={"minReplicas": 1, "maxReplicas": 2, "targetBacklogPerReplica": 10,
                       "scaleUpCooldownSeconds": 0, "intervalSeconds": 0.1},
        ),
        queues=[queue("jobs", mode="work")],
        name="autoscale",
    )  # fmt: skip
    orch = run(doc)
    orch.set_state("work", DesiredState.PAUSED)
    assert orch.loop("work").wait_for_state(LoopState.PAUSED, timeout=30)
    go.touch()
    assert until(lambda: len(orch.replicas("work")) == 2, timeout=60), orch.status().autoscale
    for handle in orch.replicas("work"):
        assert handle.wait_for_state(LoopState.PAUSED, timeout=30), handle.key
    assert records(tmp_path / "got.log") == []
