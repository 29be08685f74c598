"""A reader that takes a batch an iteration (queue.batch) and a writer that puts a list as as
many messages (queue.split), in every pool (docs/messaging.md, "Batches")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ostinato import LoopState

from .conftest import (
    WAIT,
    counters,
    go,
    loop,
    node,
    queue,
    start_writing,
    subscribed,
    until,
    workflow,
)
from .nodes import read

POOLS = ("thread", "asyncio", "process")


def batch_records(journal: str) -> list[tuple[str, int, int, bool, int, int]]:
    """(tag, n, message id, redelivered, batch size, iteration) per line of RecordBatch."""
    out = []
    for line in read(journal):
        tag, n, msg_id, redelivered, size, iteration, _pid = line.split()
        out.append((tag, int(n), int(msg_id), redelivered == "1", int(size), int(iteration)))
    return out


def split_writer(name: str, queue_name: str, kind: str = "blocking", **settings: Any) -> Any:
    return {"name": name, "kind": kind, "queue": {"write": queue_name, "split": True}, **settings}


def batch_reader(name: str, queue_name: str, max_messages: int, wait: float) -> Any:
    batch = {"maxMessages": max_messages, "maxWaitSeconds": wait}
    return {"name": name, "queue": {"read": queue_name, "batch": batch}}


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("kind", ["blocking", "nonBlocking"])
def test_a_split_writer_and_a_batch_reader_carry_every_message_once_in_order(
    run: Any, tmp_path: Path, pool: str, kind: str
) -> None:
    lists, size, batch = 40, 10, 8  # 400 messages, 50 batches of 8
    n = lists * size
    journal = str(tmp_path / "r.log")
    start = go(tmp_path)
    doc = workflow(
        loop(
            "writer",
            pool,
            node("p", "Lists", count=lists, size=size, go=start),
            split_writer("out", "q", kind),
        ),
        loop(
            "reader",
            pool,
            # A wait far beyond the test's: every batch fills up (n is a multiple of 8).
            batch_reader("in", "q", batch, 60.0),
            node("rec", "RecordBatch", "blocking", journal=journal),
        ),
        queues=[queue("q", capacity=1000)],
    )
    orch = run(doc)
    assert subscribed(orch, "reader")
    start_writing(start)
    assert until(lambda: len(read(journal)) >= n), f"{len(read(journal))} of {n}"
    got = batch_records(journal)
    assert [r[1] for r in got] == list(range(n))  # every item, once, in order
    assert [r[2] for r in got] == list(range(1, n + 1))  # one message (hub id) per item
    assert {r[0] for r in got} == {"got"}
    assert not any(r[3] for r in got)
    assert {r[4] for r in got} == {batch}  # every iteration took a full batch
    assert [r[5] for r in got] == [i // batch + 1 for i in range(n)]
    assert until(lambda: counters(orch)["acknowledged"] == n)  # together, at iteration ends
    c = counters(orch)
    assert c["enqueued"] == c["delivered"] == n
    assert c["depth"] == c["dropped"] == c["redelivered"] == c["refused"] == 0
    assert orch.loop("writer").wait_for(lambda s: s.state is LoopState.FINISHED, WAIT)
    assert orch.loop("writer").status().iterations == lists


@pytest.mark.parametrize("pool", POOLS)
def test_a_failed_batch_is_given_back_whole_and_redelivered(
    run: Any, tmp_path: Path, pool: str
) -> None:
    n, batch = 60, 5
    journal = str(tmp_path / "r.log")
    start = go(tmp_path)
    doc = workflow(
        loop(
            "writer",
            pool,
            node("p", "GoCounter", count=n, go=start),
            {"name": "out", "kind": "blocking", "queue": {"write": "q"}},
        ),
        loop(
            "reader",
            pool,
            batch_reader("in", "q", batch, 60.0),
            node("rec", "RecordBatch", "blocking", journal=journal, fail_first=1),
        ),
        queues=[queue("q", capacity=1000)],
    )
    orch = run(doc)
    assert subscribed(orch, "reader")
    start_writing(start)
    assert until(lambda: sum(r[0] == "got" for r in batch_records(journal)) >= n)
    got = batch_records(journal)
    failed = [r for r in got if r[0] == "failed"]
    done = [r for r in got if r[0] == "got"]
    assert [r[1] for r in failed] == list(range(batch))  # the first batch failed, whole
    assert sorted(r[1] for r in done) == list(range(n))  # then every message, once
    back = [r for r in done if r[3]]
    assert sorted(r[1] for r in back) == list(range(batch))  # the failed batch came back
    assert [r[2] for r in back] == sorted(r[2] for r in back)  # in its order
    assert until(lambda: counters(orch)["acknowledged"] == n)
    c = counters(orch)
    assert c["redelivered"] == batch
    assert c["delivered"] == n + batch
    assert c["depth"] == 0
    assert until(lambda: orch.loop("reader").status().failed_iterations == 1)
