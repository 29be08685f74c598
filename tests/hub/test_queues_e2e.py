"""Queues end to end (docs/messaging.md): a WorkflowOrchestrator, its hub on real sockets, writer
and reader loops in every pool. Readers journal what they get to files (tests/hub/nodes.py), so
loops in child processes, and replicas killed with SIGKILL, are checked the same way.

Every wait is bounded: loop status predicates, hub counters, journal files polled to a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ostinato import LoopState, NodeHealth, WorkflowError, load_workflow

from .conftest import (
    WAIT,
    complete,
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
    values,
    workflow,
    writer,
)
from .nodes import read

# -- broadcast ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wpool", "rpools"),
    [
        ("thread", ("thread", "process")),
        ("asyncio", ("asyncio", "thread")),
        ("process", ("process", "asyncio")),
    ],
)
def test_broadcast_every_reader_gets_every_message_once_in_order(
    run: Any, tmp_path: Path, wpool: str, rpools: tuple[str, str]
) -> None:
    n = 1500
    journals = [str(tmp_path / "r1.log"), str(tmp_path / "r2.log")]
    doc = workflow(
        loop("writer", wpool, node("p", "GoCounter", count=n), writer("out", "q")),
        *(
            loop(f"r{i + 1}", pool, reader("in", "q"), node("rec", "Record", "blocking", journal=j))
            for i, (pool, j) in enumerate(zip(rpools, journals, strict=True))
        ),
        queues=[queue("q", mode="broadcast", capacity=200)],
    )
    orch = run(doc)
    for j in journals:
        assert until(partial(complete, j, n)), f"{j}: {len(read(j))} of {n}"
    assert orch.loop("writer").wait_for(lambda s: s.state is LoopState.FINISHED, WAIT)
    for j in journals:
        got = records(j)
        assert [r[0] for r in got] == list(range(n))
        assert [r[1] for r in got] == list(range(1, n + 1))  # hub ids follow the writes
        assert not any(r[2] for r in got)
    c = counters(orch)
    assert c["enqueued"] == n
    assert c["delivered"] == 2 * n
    assert until(lambda: counters(orch)["acknowledged"] == 2 * n)
    assert c["dropped"] == c["redelivered"] == c["refused"] == 0
    assert counters(orch)["depth"] == 0


# -- work queues -------------------------------------------------------------------------------


def work_doc(tmp_path: Path, n: int, *chain: dict[str, Any], prefetch: int = 4) -> dict[str, Any]:
    journal = str(tmp_path / "worker.log")
    return workflow(
        loop(
            "writer", "thread", node("p", "GoCounter", count=n, go=go(tmp_path)), writer("out", "q")
        ),
        loop(
            "worker",
            "process",
            reader("in", "q", prefetch=prefetch),
            *chain,
            node("rec", "Record", "blocking", journal=journal),
            replicas=2,
        ),
        queues=[queue("q", mode="work", capacity=100)],
    )


def test_work_queue_replicas_share_the_messages_each_processed_exactly_once(
    run: Any, tmp_path: Path
) -> None:
    n = 1500
    journal = tmp_path / "worker.log"
    orch = run(work_doc(tmp_path, n))
    assert len(orch.replicas("worker")) == 2
    assert subscribed(orch, "*", 2)
    start_writing(go(tmp_path))
    assert until(lambda: len(read(journal)) >= n), f"{len(read(journal))} of {n}"
    got = records(journal)
    assert sorted(r[0] for r in got) == list(range(n))  # no loss, no duplicate
    by_pid = Counter(r[3] for r in got)
    assert len(by_pid) == 2, by_pid  # both replicas got some (shares depend on who keeps up)
    assert not any(r[2] for r in got)
    assert until(lambda: counters(orch)["acknowledged"] == n)
    c = counters(orch)
    assert c["enqueued"] == c["delivered"] == n
    assert c["redelivered"] == 0


@pytest.mark.slow
def test_work_queue_redelivers_what_a_killed_replica_had_not_acknowledged(
    run: Any, tmp_path: Path
) -> None:
    n = 300
    journal = tmp_path / "worker.log"
    claim, release = str(tmp_path / "claim"), str(tmp_path / "release")
    orch = run(
        work_doc(tmp_path, n, node("hold", "Hold", "blocking", claim=claim, release=release))
    )
    assert subscribed(orch, "*", 2)
    start_writing(go(tmp_path))
    # One replica takes a message and holds it, delivered and unacknowledged.
    assert until(lambda: os.path.exists(claim))
    pid_text, held_text = Path(claim).read_text().split()
    pid, held = int(pid_text), int(held_text)
    victim = [h for h in orch.replicas("worker") if h.status().pid == pid]
    assert len(victim) == 1, [h.status().pid for h in orch.replicas("worker")]
    victim[0].kill(signal.SIGKILL)
    start_writing(release)  # a restarted replica must not hold again (the claim exists anyway)
    assert until(lambda: set(values(journal)) >= set(range(n))), sorted(
        set(range(n)) - set(values(journal))
    )
    got = records(journal)
    assert pid not in {r[3] for r in got if r[0] == held}  # the victim never finished it
    assert any(r[0] == held and r[2] for r in got), "the held message came back flagged"
    c = counters(orch)
    assert c["redelivered"] >= 1
    assert until(lambda: counters(orch)["acknowledged"] >= n)
    # At least once: anything seen twice was a redelivery.
    twice = [v for v, k in Counter(values(journal)).items() if k > 1]
    assert all(any(r[0] == v and r[2] for r in got) for v in twice)
    assert victim[0].wait_for(lambda s: s.restarts >= 1 and s.state is LoopState.RUNNING, WAIT)


# -- backpressure ------------------------------------------------------------------------------


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_block_throttles_a_fast_writer_to_a_slow_reader_nothing_lost(
    run: Any, tmp_path: Path
) -> None:
    n, capacity, in_flight, prefetch = 100_000, 100, 256, 64
    journal = tmp_path / "reader.log"
    doc = workflow(
        loop(
            "writer",
            "thread",
            node("p", "GoCounter", count=n, go=go(tmp_path), pad=1000),
            writer("out", "q", kind="nonBlocking", maxInFlight=in_flight),
        ),
        loop(
            "reader",
            "process",
            reader("in", "q", prefetch=prefetch),
            node("slow", "Slow", "blocking", seconds=0.002, first=300),
            node("rec", "Record", "blocking", journal=str(journal)),
        ),
        queues=[queue("q", capacity=capacity, onFull="block")],
    )
    orch = run(doc)
    assert subscribed(orch, "reader")
    w = orch.loop("writer")
    rss_before = rss_kib()
    start_writing(go(tmp_path))
    max_depth = max_rss = 0
    ahead = 0  # iterations the writer finished beyond what the reader acknowledged
    # 33-47 s on an idle 2-core machine; the deadline only bounds a hang, with a 5x margin for
    # a loaded one (the assertions count messages, not seconds).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        written = w.status().iterations
        c = counters(orch)
        max_depth = max(max_depth, c["depth"])
        ahead = max(ahead, written - c["acknowledged"])
        max_rss = max(max_rss, rss_kib())
        if c["acknowledged"] >= n:
            break
        time.sleep(0.05)
    got = values(journal)
    assert len(got) == n, f"{len(got)} of {n} in time"
    assert got == list(range(n))
    c = counters(orch)
    assert c["enqueued"] == c["delivered"] == c["acknowledged"] == n
    assert c["dropped"] == c["redelivered"] == 0
    # The buffer filled (the reader was slow) and never grew past capacity plus the parked
    # puts, at most the writer's in-flight window.
    assert capacity <= max_depth <= capacity + in_flight, max_depth
    assert ahead <= capacity + prefetch + in_flight, ahead
    # 100 MB of messages went through; memory grew by a few MB (a bounded buffer), far less.
    assert (max_rss - rss_before) < 40 * 1024, (rss_before, max_rss)


# -- drop policies -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["dropNewest", "dropOldest"])
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_drop_policies_with_a_paused_reader(
    run: Any, tmp_path: Path, policy: str, pool: str
) -> None:
    n, capacity, prefetch = 60, 10, 4
    journal = tmp_path / "reader.log"
    doc = workflow(
        loop(
            "writer", "thread", node("p", "GoCounter", count=n, go=go(tmp_path)), writer("out", "q")
        ),
        loop(
            "reader",
            pool,
            reader("in", "q", prefetch=prefetch),
            node("rec", "Record", "blocking", journal=str(journal)),
        ),
        queues=[queue("q", capacity=capacity, onFull=policy)],
    )
    orch = run(doc)
    r = orch.loop("reader")
    assert subscribed(orch, "reader")
    r.pause()
    assert r.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    start_writing(go(tmp_path))
    # Every put is answered (a drop is no error), so the writer ends by itself.
    assert orch.loop("writer").wait_for(lambda s: s.state is LoopState.FINISHED, WAIT)
    assert orch.loop("writer").status().node("out").errors == 0
    c = counters(orch)
    assert c["enqueued"] == n
    assert c["delivered"] == 0  # a paused reader takes no credit: all waits in the hub
    assert c["depth"] == capacity
    assert c["dropped"] == n - capacity
    assert r.status().iterations == 0
    r.resume()
    assert until(lambda: counters(orch)["acknowledged"] == capacity)
    assert until(lambda: len(read(journal)) == capacity)
    got = values(journal)
    assert len(got) + counters(orch)["dropped"] == n
    if policy == "dropNewest":
        assert got == list(range(capacity))
    else:
        assert got == list(range(n - capacity, n))
    assert counters(orch)["dropped"] == n - len(got)


# -- pause -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["thread", "asyncio", "process"])
def test_a_paused_reader_stops_consuming_and_messages_wait_in_the_hub(
    run: Any, tmp_path: Path, pool: str
) -> None:
    n, prefetch = 50, 4
    journal = tmp_path / "reader.log"
    doc = workflow(
        loop(
            "writer", "thread", node("p", "GoCounter", count=n, go=go(tmp_path)), writer("out", "q")
        ),
        loop(
            "reader",
            pool,
            reader("in", "q", prefetch=prefetch),
            node("rec", "Record", "blocking", journal=str(journal)),
        ),
        queues=[queue("q", capacity=1000)],
    )
    orch = run(doc)
    r = orch.loop("reader")
    assert subscribed(orch, "reader")
    r.pause()
    assert r.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    start_writing(go(tmp_path))
    assert orch.loop("writer").wait_for(lambda s: s.state is LoopState.FINISHED, WAIT)
    assert until(lambda: counters(orch)["depth"] == n)  # a paused reader holds nothing
    # A bounded look: while paused, nothing is consumed and the messages stay in the hub.
    assert not threading.Event().wait(0.3)
    assert read(journal) == []
    assert r.status().iterations == 0
    assert r.state is LoopState.PAUSED
    c = counters(orch)
    assert c["depth"] == n
    assert c["acknowledged"] == 0
    r.resume()
    assert until(lambda: len(read(journal)) >= n)
    assert values(journal) == list(range(n))
    assert until(lambda: counters(orch)["acknowledged"] == n)
    assert counters(orch)["depth"] == 0


# -- maxMessageBytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_an_oversize_message_fails_its_writer_and_the_hub_keeps_serving(
    run: Any, tmp_path: Path, pool: str
) -> None:
    journal = tmp_path / "reader.log"
    sizes = [10, 20, 5000, 30, 40, 6000]
    doc = workflow(
        loop("writer", pool, node("p", "Sizes", sizes=sizes), writer("out", "q")),
        loop(
            "reader",
            "thread",
            reader("in", "q"),
            node("rec", "Record", "blocking", journal=str(journal)),
        ),
        queues=[queue("q", maxMessageBytes=1000)],
    )
    orch = run(doc)
    w = orch.loop("writer")
    assert w.wait_for(lambda s: s.state is LoopState.FINISHED, WAIT)
    assert until(lambda: len(read(journal)) >= 4)
    assert values(journal) == [0, 1, 3, 4]
    out = w.status().node("out")
    assert out.errors == 2
    assert out.health is NodeHealth.FAILING  # the last message was the second oversize one
    assert out.last_error is not None
    assert "maxMessageBytes" in out.last_error
    assert "'q'" in out.last_error
    assert w.status().failed_iterations == 2
    c = counters(orch)
    assert c["refused"] == 2
    assert c["enqueued"] == 4


# -- a blocking reader inside the chain --------------------------------------------------------


@pytest.mark.parametrize("pool", ["thread", "asyncio", "process"])
def test_a_blocking_reader_joins_a_second_queue_into_the_iteration(
    run: Any, tmp_path: Path, pool: str
) -> None:
    n = 30
    journal = tmp_path / "join.log"
    doc = workflow(
        loop("left", "thread", node("p", "GoCounter", count=n), writer("out", "a")),
        loop("right", "thread", node("p", "GoCounter", count=n), writer("out", "b")),
        loop(
            "join",
            pool,
            reader("in", "a"),
            node("keep", "Remember", "blocking"),
            reader("other", "b", kind="blocking"),
            node("rec", "RecordPair", "blocking", journal=str(journal)),
        ),
        queues=[queue("a"), queue("b")],
    )
    orch = run(doc)
    assert until(partial(complete, journal, n)), read(journal)
    rows = [line.split() for line in read(journal)]
    assert [(int(r[1]), int(r[2])) for r in rows] == [(i, i) for i in range(n)]
    assert [int(r[3]) for r in rows] == list(range(1, n + 1))  # one iteration per pair
    assert until(lambda: [counters(orch, q)["acknowledged"] for q in "ab"] == [n, n])


def test_two_readers_of_one_queue_in_a_loop_are_refused_or_served(run: Any, tmp_path: Path) -> None:
    n = 10
    journal = tmp_path / "pairs.log"
    doc = workflow(
        loop("writer", "thread", node("p", "GoCounter", count=n), writer("out", "q")),
        loop(
            "pairs",
            "thread",
            reader("in", "q"),
            node("keep", "Remember", "blocking"),
            reader("again", "q", kind="blocking"),
            node("rec", "RecordPair", "blocking", journal=str(journal)),
        ),
        queues=[queue("q")],
    )
    refused = None
    try:
        load_workflow(doc)
    except WorkflowError as exc:
        refused = str(exc)
    if refused is not None:  # refused: fine, if it names the second reader
        assert "again" in refused or "nodes[1]" in refused
        return
    orch = run(doc)
    assert until(partial(complete, journal, n // 2), timeout=3), orch.status().queues
    rows = [line.split() for line in read(journal)]
    assert sorted(int(x) for r in rows for x in r[1:3]) == list(range(n))


# -- broadcast reader restarts -----------------------------------------------------------------


def test_a_killed_broadcast_reader_resumes_where_it_left_off(run: Any, tmp_path: Path) -> None:
    n = 200
    journal = tmp_path / "reader.log"
    claim, release = str(tmp_path / "claim"), str(tmp_path / "release")
    doc = workflow(
        loop(
            "writer", "thread", node("p", "GoCounter", count=n, go=go(tmp_path)), writer("out", "q")
        ),
        loop(
            "reader",
            "process",
            reader("in", "q", prefetch=8),
            node("hold", "Hold", "blocking", claim=claim, release=release),
            node("rec", "Record", "blocking", journal=str(journal)),
        ),
        queues=[queue("q", mode="broadcast", capacity=50)],
    )
    orch = run(doc)
    r = orch.loop("reader")
    assert subscribed(orch, "reader")
    start_writing(go(tmp_path))
    assert until(lambda: os.path.exists(claim))
    pid, held = (int(x) for x in Path(claim).read_text().split())
    assert r.status().pid == pid
    r.kill(signal.SIGKILL)
    start_writing(release)
    assert until(lambda: set(values(journal)) >= set(range(n)))
    got = records(journal)
    # The held message and what was prefetched behind it come back first, flagged, in order:
    # the reader sees the stream in order, once, as if it had never died.
    assert [x[0] for x in got] == list(range(n))
    assert got[0][0] == held == 0
    assert got[0][2]  # redelivered
    assert counters(orch)["redelivered"] >= 1
    assert r.status().restarts >= 1
