"""docs/concepts.md, Pools: where each pool runs a loop and its nodes."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from .conftest import loop, node, workflow
from .nodes import GATES, read

WAIT = 20.0


def where(journal: str, pool: str, **settings: Any) -> dict[str, Any]:
    return loop(
        pool,
        pool,
        node("p", "Count", journal=journal, tag="p", count=1),
        node("s", "Where", "blocking", journal=journal, tag=f"{pool}-sync"),
        node("a", "AsyncWhere", "blocking", journal=journal, tag=f"{pool}-async"),
        **settings,
    )


def test_each_pool_runs_where_the_design_says(run: Any, journal: str) -> None:
    orch = run(
        workflow(where(journal, "thread"), where(journal, "asyncio"), where(journal, "process"))
    )
    assert orch.wait(timeout=WAIT)
    facts = {
        line.split()[0]: dict(kv.split("=", 1) for kv in line.split()[1:])
        for line in read(journal)
        if "pid=" in line
    }
    me = str(os.getpid())
    main_thread = threading.main_thread().name
    # thread pool: its own thread in this process; sync nodes inline on the loop's thread.
    assert facts["thread-sync"]["pid"] == me
    assert (
        facts["thread-sync"]["thread"] == facts["thread-async"]["thread"] == "ostinato-loop-thread"
    )
    # asyncio pool: async nodes on the event loop's thread, sync nodes off it.
    assert facts["asyncio-async"]["thread"] == "ostinato-asyncio-asyncio"
    assert facts["asyncio-sync"]["on_event_loop"] == "False"
    assert facts["asyncio-sync"]["thread"].startswith("ostinato-asyncio-node")
    # process pool: another process, its main thread.
    assert facts["process-sync"]["pid"] != me
    assert facts["process-sync"]["pid"] == facts["process-async"]["pid"]
    assert facts["process-sync"]["thread"] == main_thread


def test_a_blocked_sync_node_does_not_stall_a_loop_sharing_its_event_loop(
    run: Any, journal: str
) -> None:
    gate = GATES.setdefault("shared-loop", threading.Event())
    gate.clear()
    doc = workflow(
        loop(
            "stuck",
            "asyncio",
            node("p", "Count", journal=journal, tag="stuck"),
            node("s", "Step", "blocking", journal=journal, tag="s", gate="shared-loop"),
            eventLoop="shared",
        ),
        loop(
            "free",
            "asyncio",
            node("p", "AsyncCount", journal=journal, tag="free"),
            eventLoop="shared",
        ),
    )
    orch = run(doc)
    try:
        assert orch.loop("stuck").wait_for(lambda s: s.nodes and s.node("s").calls == 0, WAIT)
        assert orch.loop("free").wait_for(lambda s: s.iterations >= 200, WAIT)
        assert orch.loop("stuck").status().iterations == 0
    finally:
        gate.set()
    assert orch.loop("stuck").wait_for(lambda s: s.iterations >= 1, WAIT)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_async_side_effects_progress_while_sync_nodes_keep_the_loop_busy(
    run: Any, journal: str, pool: str
) -> None:
    # A tight all-sync chain must still give async side effects their turns.
    doc = workflow(
        loop(
            pool,
            pool,
            node("p", "Count", journal=journal, tag="p", count=300),
            {
                **node(
                    "fx",
                    "AsyncEffect",
                    "nonBlocking",
                    journal=journal,
                    tag="fx",
                    hold_seconds=0.001,
                ),
                "maxInFlight": 4,
                "onFull": "drop",
            },
        ),
    )
    orch = run(doc)
    assert orch.wait(timeout=WAIT)
    fx = orch.status().loop(pool).node("fx")
    assert fx.calls + fx.dropped == 300
    assert fx.calls >= 4  # not all dropped: the event loop ran them between iterations
