"""A blocking queue writer stopped before the hub acknowledged its message: its iteration fails,
so the nodes after it never take the message for acknowledged (docs/messaging.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ostinato import DesiredState, LoopState

from .conftest import (
    WAIT,
    counters,
    go,
    loop,
    node,
    queue,
    reader,
    start_writing,
    subscribed,
    until,
    values,
    workflow,
    writer,
)
from .nodes import read

pytestmark = pytest.mark.timeout(60)


def numbers(journal: Path) -> list[int]:
    """The numbers a Record node journaled for data that came from no queue."""
    return [int(line.split()[1]) for line in read(journal)]


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_writer_stopped_while_unacknowledged_does_not_pass_its_message_on(
    run: Any, tmp_path: Path, pool: str
) -> None:
    sent, got = tmp_path / "sent.log", tmp_path / "got.log"
    doc = workflow(
        loop(
            "writer",
            pool,
            node("count", "GoCounter", count=5, go=go(tmp_path)),
            writer("send", "q"),
            node("sent", "Record", "blocking", journal=str(sent), tag="sent"),
        ),
        loop(
            "reader",
            "thread",
            reader("in", "q"),
            node("got", "Record", "blocking", journal=str(got)),
        ),
        queues=[queue("q", capacity=1, onFull="block")],
    )
    orch = run(doc)
    # The reader holds still: the queue's one place takes 0, and 1 is parked in the hub,
    # unacknowledged, while the writer waits for its acknowledgement.
    assert subscribed(orch, "reader")
    orch.pause("reader")
    assert orch.loop("reader").wait_for_state(LoopState.PAUSED, timeout=WAIT)
    start_writing(go(tmp_path))
    assert until(lambda: counters(orch)["enqueued"] == 1 and counters(orch)["depth"] == 2), (
        counters(orch)
    )
    assert numbers(sent) == [0]

    orch.set_state("writer", DesiredState.STOPPED)
    w = orch.loop("writer")
    assert w.wait_for(lambda s: s.state is LoopState.STOPPED, WAIT)
    # 1 was never acknowledged: the node after the writer did not run for it.
    assert numbers(sent) == [0]
    status = w.status()
    assert status.failed_iterations == 1
    assert status.node("send").errors == 1
    assert "stopped before the hub acknowledged a message on 'q'" in str(status.last_error)
    # It was parked in the hub, though: the reader gets it once it runs.
    orch.resume("reader")
    assert until(lambda: len(read(got)) >= 2)
    assert values(got) == [0, 1]
