"""Batches split and merged at every boundary (docs/messaging.md, "Batches"): a writer's run of
puts is one frame and the hub hands out slices of it as credit allows, so each boundary (credit
running out mid-batch, a consumer dying mid-batch, a pause mid-batch, a durable hub killed
mid-batch) must still bring every sequence number, at least once, in the writer's order.

Journals (tests/hub/nodes.py) record what the readers got; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ostinato import LoopState
from ostinato._messaging._client import HubClient

from .conftest import (
    WAIT,
    counters,
    go,
    loop,
    node,
    queue,
    reader,
    records,
    start_writing,
    subscribed,
    until,
    workflow,
)
from .nodes import read
from .test_batches import batch_reader, batch_records, split_writer
from .test_durable_restart import HubProcess, free_port


def first_seen_in_order(got: list[int]) -> bool:
    """Every value's first arrival comes after the first arrival of every smaller one."""
    firsts = list(dict.fromkeys(got))
    return firsts == sorted(firsts)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_credit_running_out_mid_batch_splits_it_and_loses_nothing(
    run: Any, tmp_path: Path, pool: str
) -> None:
    """Runs of 50 puts meet readers with credit for 3 (one message an iteration) and 7 (a
    batch reader, prefetch 14): the hub cuts every run at the credit, many times over."""
    lists, size = 20, 50
    n = lists * size
    plain, batched = str(tmp_path / "plain.log"), str(tmp_path / "batched.log")
    doc = workflow(
        loop(
            "writer",
            pool,
            node("p", "Lists", count=lists, size=size, go=go(tmp_path)),
            split_writer("out", "q", "nonBlocking", maxInFlight=4),
        ),
        loop(
            "plain",
            pool,
            reader("in", "q", prefetch=3),
            node("rec", "Record", "blocking", journal=plain),
        ),
        loop(
            "batched",
            pool,
            {**batch_reader("in", "q", 7, 0.0), "config": {"prefetch": 3}},
            node("rec", "RecordBatch", "blocking", journal=batched),
        ),
        queues=[queue("q", capacity=2 * n)],
    )
    orch = run(doc)
    assert subscribed(orch, "plain")
    assert subscribed(orch, "batched")
    start_writing(go(tmp_path))
    assert until(lambda: len(read(plain)) >= n and len(read(batched)) >= n)
    assert [r[0] for r in records(plain)] == list(range(n))  # once each, in order
    assert [r[1] for r in batch_records(batched)] == list(range(n))
    assert max(r[4] for r in batch_records(batched)) <= 7
    assert until(lambda: counters(orch)["acknowledged"] == 2 * n)
    c = counters(orch)
    assert c["redelivered"] == c["dropped"] == c["depth"] == 0


@pytest.mark.slow
def test_a_batch_reader_killed_mid_batch_gives_the_batch_to_another(
    run: Any, tmp_path: Path
) -> None:
    """Two process replicas take batches of 5 from a work queue; one holds its batch
    (delivered, unacknowledged) and is killed: the batch comes back, flagged, and every
    number arrives at least once, each replica's first deliveries in the writer's order."""
    n = 200
    journal = str(tmp_path / "worker.log")
    claim, release = str(tmp_path / "claim"), str(tmp_path / "release")
    doc = workflow(
        loop(
            "writer",
            "thread",
            node("p", "Lists", count=n // 10, size=10, go=go(tmp_path)),
            split_writer("out", "q"),
        ),
        loop(
            "worker",
            "process",
            batch_reader("in", "q", 5, 0.0),
            node("hold", "HoldOnce", "blocking", claim=claim, release=release),
            node("rec", "RecordBatch", "blocking", journal=journal),
            replicas=2,
        ),
        queues=[queue("q", mode="work", capacity=1000)],
    )
    orch = run(doc)
    assert subscribed(orch, "*", 2)
    start_writing(go(tmp_path))
    assert until(lambda: os.path.exists(claim))
    pid_text, _first = Path(claim).read_text().split()
    pid = int(pid_text)
    victim = [h for h in orch.replicas("worker") if h.status().pid == pid]
    assert len(victim) == 1
    victim[0].kill(signal.SIGKILL)
    # Dead before the release (a kill is delivered asynchronously): its replacement is up.
    assert victim[0].wait_for(lambda st: st.restarts >= 1, WAIT)
    start_writing(release)
    assert until(lambda: {r[1] for r in batch_records(journal)} >= set(range(n))), sorted(
        set(range(n)) - {r[1] for r in batch_records(journal)}
    )
    got = [
        (*r, int(line.split()[-1]))
        for r, line in zip(batch_records(journal), read(journal), strict=True)
    ]
    assert pid not in {r[-1] for r in got}  # the victim finished no batch
    assert any(r[3] for r in got), "the held batch came back flagged"
    for replica in {r[-1] for r in got}:
        fresh = [r[1] for r in got if r[-1] == replica and not r[3]]
        assert fresh == sorted(fresh)  # a replica's first deliveries keep the writer's order
    twice = [v for v, k in Counter(r[1] for r in got).items() if k > 1]
    assert all(any(r[1] == v and r[3] for r in got) for v in twice)  # only redeliveries repeat
    assert until(lambda: counters(orch)["acknowledged"] >= n)


@pytest.mark.parametrize("pool", ["thread", "asyncio", "process"])
def test_a_pause_mid_batch_finishes_the_batch_and_gives_back_the_rest_in_order(
    run: Any, tmp_path: Path, pool: str
) -> None:
    """The reader is paused while batches flow: the batch in hand finishes (acknowledged),
    what waits in its inbox goes back to the hub, and after the resume every number arrives
    exactly once, in order."""
    lists, size = 10, 40
    n = lists * size
    journal = str(tmp_path / "r.log")
    doc = workflow(
        loop(
            "writer",
            "thread",
            node("p", "Lists", count=lists, size=size, go=go(tmp_path)),
            split_writer("out", "q"),
        ),
        loop(
            "reader",
            pool,
            batch_reader("in", "q", 8, 0.0),
            node("slow", "Slow", "blocking", seconds=0.02, first=1000),
            node("rec", "RecordBatch", "blocking", journal=journal),
        ),
        queues=[queue("q", capacity=1000)],
    )
    orch = run(doc)
    r = orch.loop("reader")
    assert subscribed(orch, "reader")
    start_writing(go(tmp_path))
    assert until(lambda: len(read(journal)) >= 16)  # batches are flowing
    r.pause()
    assert r.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    assert orch.loop("writer").wait_for(lambda s: s.state is LoopState.FINISHED, WAIT)
    seen = len(read(journal))
    assert seen < n
    assert until(lambda: counters(orch)["depth"] == n - seen)  # the rest waits in the hub
    r.resume()
    assert until(lambda: len(read(journal)) >= n)
    got = batch_records(journal)
    assert [x[1] for x in got] == list(range(n))  # exactly once, in order
    assert until(lambda: counters(orch)["acknowledged"] == n)
    assert counters(orch)["depth"] == 0


DURABLE = """
apiVersion: ostinato.dev/v1alpha1
kind: Workflow
metadata: {name: durable}
spec:
  queues:
    - {name: events, mode: work, capacity: 100000, durable: true}
  loops:
    - name: writer
      producer: {name: count, class: CounterProducer}
      nodes:
        - {name: out, kind: blocking, queue: {write: events, split: true}}
    - name: reader
      producer: {name: in, queue: {read: events, batch: {maxMessages: 64}}}
"""


@pytest.mark.slow
def test_a_durable_hub_killed_mid_batch_loses_no_number_and_keeps_the_order(
    tmp_path: Path,
) -> None:
    """A writer puts lists of 500 (runs of 500 puts, cut into frames by the window); the
    durable hub is killed with SIGKILL mid-way and restarted on the same store. The writer
    sends again what the dead hub never acknowledged: every number arrives at least once,
    first arrivals in the writer's order, taken in batches."""
    workflow_file = tmp_path / "wf.yaml"
    workflow_file.write_text(DURABLE)
    port = free_port()
    process = HubProcess(workflow_file, tmp_path / "state", port)
    endpoint = f"tcp://127.0.0.1:{port}"
    process.start()
    writer = HubClient(endpoint, b"writer/0/k", loop="writer", heartbeat=0.2)
    writer.start()
    lists, size = 8, 500
    n = lists * size
    half = threading.Event()
    done = threading.Event()
    failed: list[BaseException] = []

    async def write() -> None:
        writer.attach()
        put = writer.list_putter()
        loop = asyncio.get_running_loop()
        outcomes = []
        meta = msgpack.packb(["writer", 1, "0" * 16, 0.0])
        for k in range(lists):
            fut: asyncio.Future[BaseException | None] = loop.create_future()
            payloads = [msgpack.packb(v) for v in range(k * size, (k + 1) * size)]
            put("events", payloads, meta, lambda e, f=fut: f.done() or f.set_result(e))
            outcomes.append(fut)
            if k == lists // 2:
                half.set()  # the test kills the hub now, with runs in flight
            await asyncio.sleep(0.01)
        for fut in outcomes:
            assert await asyncio.wait_for(fut, 3 * WAIT) is None

    def writing() -> None:
        try:
            asyncio.run(write())
        except BaseException as exc:  # reported in the test's thread
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writing)
    thread.start()
    try:
        assert half.wait(WAIT)
        process.kill()
        process.start()  # the same state directory
        assert done.wait(3 * WAIT)
        assert not failed, failed
        reader = HubClient(endpoint, b"reader/0/k", loop="reader", heartbeat=0.2)
        reader.start()
        try:
            got = asyncio.run(read_batches(reader, n))
        finally:
            reader.close()
    finally:
        thread.join(WAIT)
        writer.close()
        process.stop()
    assert set(got) == set(range(n))  # at least once
    assert first_seen_in_order(got)


async def read_batches(client: HubClient, n: int) -> list[int]:
    """Take messages 64 at a time (a batch reader's take) until every number came."""
    client.attach()
    inbox = client.subscribe("events", prefetch=128)
    got: list[int] = []
    while len(set(got)) < n:
        items = inbox.take_many(64)
        if not items:
            await asyncio.wait_for(inbox.arrival(), WAIT)
            continue
        got.extend(msgpack.unpackb(item[1]) for item in items)
        client.ack_many("events", [item[0] for item in items])
    return got
