"""A paused work-queue reader gives its waiting messages to the replicas that still run."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ostinato import LoopState

from ..engine.conftest import journal, loop, node, workflow
from ..engine.nodes import GATES

WAIT = 30.0
__all__ = ["journal"]  # the engine tests' fixture, used here


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_messages_written_while_a_replica_is_paused_go_to_the_others(
    run: Any, journal: str, pool: str
) -> None:
    gate = GATES.setdefault(f"release-{pool}", threading.Event())
    gate.clear()
    doc = workflow(
        loop(
            "writer",
            "thread",
            node("p", "Count", journal=journal, tag="w", count=60),
            node("hold", "Step", "blocking", journal=journal, tag="hold", gate=f"release-{pool}"),
            {"name": "out", "kind": "blocking", "queue": {"write": "jobs"}},
        ),
        loop(
            "worker",
            pool,
            {"name": "in", "queue": {"read": "jobs"}, "config": {"prefetch": 8}},
            node("s", "Step", "blocking", journal=journal, tag="s"),
            replicas=2,
        ),
    )
    doc["spec"]["queues"] = [{"name": "jobs", "mode": "work", "capacity": 1000}]
    orch = run(doc)
    first, second = orch.replicas("worker")
    for replica in (first, second):
        assert replica.wait_for(lambda s: s.state is LoopState.RUNNING, WAIT)
    first.pause()
    assert first.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    gate.set()  # now the writer writes its 60 messages
    assert second.wait_for(lambda s: s.iterations == 60, WAIT), (
        second.status().iterations,
        orch.status().queues,
    )
    assert first.status().iterations == 0
    first.resume()
    assert first.wait_for_state(LoopState.RUNNING, timeout=WAIT)
