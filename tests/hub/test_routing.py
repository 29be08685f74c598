"""QueueState and Outbox without sockets (docs/messaging.md): routing, credit, acknowledgements,
redelivery, the onFull policies, maxMessageBytes and durable queues over a real DurableStore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ostinato._messaging._queues import Outbox, QueueState
from ostinato._messaging._store import DurableStore
from ostinato._model._spec import QueueSpec

W = b"writer"
A = b"consumer-a"
B = b"consumer-b"


def spec(**settings: Any) -> QueueSpec:
    return QueueSpec.model_validate({"name": "q", **settings})


def put(q: QueueState, out: Outbox, *seqs: int, writer: bytes = W, size: int = 0) -> None:
    for seq in seqs:
        q.put(writer, seq, (b"p%d" % seq).ljust(size, b"."), b"m%d" % seq, out)


def acked(out: Outbox, writer: bytes = W) -> list[list[Any]]:
    return list(out.acks.get(writer, []))


def delivered(out: Outbox, consumer: bytes, queue: str = "q") -> list[list[Any]]:
    """[id, payload, meta, redelivered] in the order the consumer would receive them."""
    return list(out.messages.get((consumer, queue), []))


def ids(out: Outbox, consumer: bytes) -> list[int]:
    return [m[0] for m in delivered(out, consumer)]


def buffered(q: QueueState, group: str) -> list[int]:
    return [m.id for m in q.groups[group].buffer]


# -- Outbox ------------------------------------------------------------------------------------


def test_outbox_collects_acks_and_messages_and_clears() -> None:
    out = Outbox()
    assert not out
    out.ack(W, "q", 1)
    out.ack(W, "q", 2, "too large")
    assert out
    assert out.acks[W] == [["q", 1], ["q", 2, "too large"]]
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 1, out)
    put(q, out, 7)
    assert delivered(out, A) == [[1, b"p7", b"m7", False]]
    out.clear()
    assert not out
    assert not out.acks
    assert not out.messages


# -- broadcast ---------------------------------------------------------------------------------


def test_broadcast_gives_every_message_to_each_reading_loop_once_in_order() -> None:
    out = Outbox()
    q = QueueState(spec(mode="broadcast"), ["r1", "r2"])
    q.subscribe(A, "r1", 100, out)
    q.subscribe(B, "r2", 100, out)
    put(q, out, *range(1, 11))
    assert acked(out) == [["q", s] for s in range(1, 11)]
    for consumer in (A, B):
        got = delivered(out, consumer)
        assert [m[0] for m in got] == list(range(1, 11))
        assert [m[1] for m in got] == [b"p%d" % s for s in range(1, 11)]
        assert [m[2] for m in got] == [b"m%d" % s for s in range(1, 11)]
        assert not any(m[3] for m in got)
    assert q.counters.enqueued == 10
    assert q.counters.delivered == 20
    assert q.depth == 0


def test_broadcast_to_replicas_of_one_loop_gives_each_message_to_one_of_them() -> None:
    out = Outbox()
    q = QueueState(spec(mode="broadcast"), ["r1", "r2"])
    q.subscribe(A, "r1", 100, out)
    q.subscribe(B, "r1", 100, out)  # a second replica of r1
    put(q, out, *range(1, 9))
    assert sorted(ids(out, A) + ids(out, B)) == list(range(1, 9))
    assert ids(out, A)
    assert ids(out, B)
    # r2 has no consumer yet: its copy waits for it.
    assert buffered(q, "r2") == list(range(1, 9))
    assert q.depth == 8


def test_a_loop_that_does_not_read_the_queue_cannot_subscribe() -> None:
    out = Outbox()
    q = QueueState(spec(mode="broadcast"), ["r1"])
    error = q.subscribe(A, "other", 5, out)
    assert error is not None
    assert "other" in error
    assert "'q'" in error
    put(q, out, 1)
    assert not out.messages


# -- work queues and credit --------------------------------------------------------------------


def test_work_queue_spreads_messages_over_consumers_by_credit() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 5, out)
    q.subscribe(B, "w", 5, out)
    put(q, out, *range(1, 11))
    a, b = ids(out, A), ids(out, B)
    assert sorted(a + b) == list(range(1, 11))
    assert len(a) == len(b) == 5
    # one message each in turn, while both have credit
    assert {tuple(sorted(pair)) for pair in zip(a, b, strict=True)} == {
        (i, i + 1) for i in range(1, 11, 2)
    }


def test_work_queue_credit_decides_the_share() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 1, out)
    q.subscribe(B, "w", 3, out)
    put(q, out, *range(1, 7))
    assert len(ids(out, A)) == 1
    assert len(ids(out, B)) == 3
    assert q.depth == 2


def test_credit_limits_delivery_and_acks_return_it() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 2, out)
    put(q, out, *range(1, 7))
    assert ids(out, A) == [1, 2]
    assert q.depth == 4
    assert q.counters.delivered == 2
    out.clear()
    q.acknowledge(A, "w", [1], out)
    assert ids(out, A) == [3]
    assert q.counters.acknowledged == 1
    out.clear()
    # A duplicate or unknown ack returns no credit.
    q.acknowledge(A, "w", [1, 99], out)
    assert not out.messages
    assert q.counters.acknowledged == 1
    q.acknowledge(A, "w", [2, 3], out)
    assert ids(out, A) == [4, 5]
    assert q.counters.acknowledged == 3
    assert q.depth == 1
    # An ack from a consumer the queue does not know is ignored.
    out.clear()
    q.acknowledge(B, "w", [4, 5], out)
    assert not out.messages
    assert q.counters.acknowledged == 3


def test_subscribing_again_counts_what_the_consumer_still_holds() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 3, out)
    put(q, out, *range(1, 6))
    assert ids(out, A) == [1, 2, 3]
    out.clear()
    q.subscribe(A, "w", 3, out)  # e.g. after a hub id change: 3 still in flight, no new credit
    assert not out.messages
    q.subscribe(A, "w", 4, out)
    assert ids(out, A) == [4]


def test_lost_consumer_gives_its_messages_back_to_the_front_in_id_order() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 3, out)
    q.subscribe(B, "w", 3, out)
    put(q, out, *range(1, 10))
    held = ids(out, A)
    assert len(held) == 3
    assert buffered(q, "*") == [7, 8, 9]
    out.clear()
    assert q.lost(A, out) == 3
    assert q.counters.redelivered == 3
    # Back at the front, oldest first, flagged; nothing delivered (B has no credit left).
    assert buffered(q, "*") == [*sorted(held), 7, 8, 9]
    assert all(m.redelivered for m in list(q.groups["*"].buffer)[:3])
    assert not any(m.redelivered for m in list(q.groups["*"].buffer)[3:])
    assert not out.messages
    # The next consumer gets them first, marked redelivered.
    q.subscribe(b"consumer-c", "w", 4, out)
    got = delivered(out, b"consumer-c")
    assert [m[0] for m in got] == [*sorted(held), 7]
    assert [m[3] for m in got] == [True, True, True, False]
    # Losing it again, or a consumer never seen, changes nothing else.
    out.clear()
    assert q.lost(b"stranger", out) == 0
    assert q.counters.redelivered == 3
    # Acks from the lost consumer are ignored: its messages belong to others now.
    q.acknowledge(A, "w", held, out)
    assert q.counters.acknowledged == 0


def test_lost_consumer_with_spare_credit_redelivers_at_once_to_another() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 2, out)
    put(q, out, 1, 2)
    q.subscribe(B, "w", 5, out)
    out.clear()
    assert q.lost(A, out) == 2
    assert delivered(out, B) == [[1, b"p1", b"m1", True], [2, b"p2", b"m2", True]]


def test_given_back_messages_return_to_the_front_in_order_with_their_credit() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 4, out)
    put(q, out, *range(1, 8))
    assert ids(out, A) == [1, 2, 3, 4]
    out.clear()
    # A failed batch of 2 and 3 comes back (ids it does not hold are ignored): A's credit
    # returns, and the oldest go out again first, flagged.
    q.give_back(A, "w", [3, 2, 99], out)
    got = delivered(out, A)
    assert [m[0] for m in got] == [2, 3]
    assert [m[3] for m in got] == [True, True]
    assert q.counters.redelivered == 2
    assert buffered(q, "*") == [5, 6, 7]
    # A stranger's give-back changes nothing.
    out.clear()
    q.give_back(B, "w", [1], out)
    assert not out.messages
    assert q.counters.redelivered == 2
    q.acknowledge(A, "w", [1, 2, 3, 4], out)
    assert q.counters.acknowledged == 4
    assert ids(out, A) == [5, 6, 7]


def test_lost_broadcast_consumer_returns_messages_to_its_own_group_only() -> None:
    out = Outbox()
    q = QueueState(spec(mode="broadcast"), ["r1", "r2"])
    q.subscribe(A, "r1", 5, out)
    q.subscribe(B, "r2", 5, out)
    put(q, out, 1, 2, 3)
    q.acknowledge(B, "r2", [1, 2, 3], out)
    out.clear()
    assert q.lost(A, out) == 3
    assert buffered(q, "r1") == [1, 2, 3]
    assert buffered(q, "r2") == []


# -- onFull: block -----------------------------------------------------------------------------


def test_block_parks_puts_unacknowledged_and_admits_them_in_fifo_order() -> None:
    out = Outbox()
    q = QueueState(spec(capacity=3, onFull="block"), ["r"])
    put(q, out, 1, 2, 3, 4, 5)
    put(q, out, 1, 2, writer=b"other-writer")
    assert acked(out) == [["q", 1], ["q", 2], ["q", 3]]
    assert acked(out, b"other-writer") == []
    assert len(q.parked) == 4
    assert q.depth == 3 + 4
    assert q.counters.dropped == 0
    out.clear()
    q.subscribe(A, "r", 1, out)  # one message out makes room for exactly one parked put
    assert ids(out, A) == [1]
    assert acked(out) == [["q", 4]]
    assert buffered(q, "r") == [2, 3, 4]
    out.clear()
    q.acknowledge(A, "r", [1], out)
    assert ids(out, A) == [2]
    assert acked(out) == [["q", 5]]
    out.clear()
    # A put arriving while others are parked queues behind them, even from another writer.
    q.acknowledge(A, "r", [2], out)
    assert acked(out) == []
    assert acked(out, b"other-writer") == [["q", 1]]
    out.clear()
    q.subscribe(A, "r", 100, out)
    assert acked(out, b"other-writer") == [["q", 2]]
    assert ids(out, A) == [4, 5, 6, 7]  # ids follow acceptance order: writer's 4, 5, then other's
    assert [m[1] for m in delivered(out, A)] == [b"p4", b"p5", b"p1", b"p2"]
    assert not q.parked
    assert q.counters.enqueued == 7
    assert q.counters.dropped == 0


def test_block_waits_for_the_slowest_reading_loop() -> None:
    out = Outbox()
    q = QueueState(spec(capacity=2, onFull="block"), ["fast", "slow"])
    q.subscribe(A, "fast", 100, out)
    put(q, out, 1, 2, 3, 4)
    assert ids(out, A) == [1, 2]  # the slow loop's buffer is full: 3 and 4 are parked
    assert acked(out) == [["q", 1], ["q", 2]]
    assert buffered(q, "slow") == [1, 2]
    out.clear()
    q.subscribe(B, "slow", 1, out)
    assert ids(out, B) == [1]
    assert ids(out, A) == [3]
    assert acked(out) == [["q", 3]]


# -- onFull: dropOldest, dropNewest ------------------------------------------------------------


def test_drop_oldest_evicts_the_oldest_waiting_messages_and_counts_them() -> None:
    out = Outbox()
    q = QueueState(spec(capacity=3, onFull="dropOldest"), ["r"])
    put(q, out, *range(1, 8))
    assert acked(out) == [["q", s] for s in range(1, 8)]  # every writer is answered: no error
    assert buffered(q, "r") == [5, 6, 7]
    assert q.counters.dropped == 4
    assert q.counters.enqueued == 7
    assert q.depth == 3
    q.subscribe(A, "r", 10, out)
    assert ids(out, A) == [5, 6, 7]


def test_drop_oldest_never_touches_messages_already_delivered() -> None:
    out = Outbox()
    q = QueueState(spec(capacity=2, onFull="dropOldest"), ["r"])
    q.subscribe(A, "r", 2, out)
    put(q, out, *range(1, 7))
    assert ids(out, A) == [1, 2]
    assert buffered(q, "r") == [5, 6]
    assert q.counters.dropped == 2


def test_drop_newest_keeps_the_oldest_waiting_messages_and_counts_the_rest() -> None:
    out = Outbox()
    q = QueueState(spec(capacity=3, onFull="dropNewest"), ["r"])
    put(q, out, *range(1, 8))
    assert acked(out) == [["q", s] for s in range(1, 8)]
    assert buffered(q, "r") == [1, 2, 3]
    assert q.counters.dropped == 4
    q.subscribe(A, "r", 10, out)
    assert ids(out, A) == [1, 2, 3]
    out.clear()
    put(q, out, 8)  # room again: accepted
    assert ids(out, A) == [8]
    assert q.counters.dropped == 4


@pytest.mark.parametrize("policy", ["dropOldest", "dropNewest"])
def test_drops_are_counted_per_reading_loop_that_lost_the_message(policy: str) -> None:
    out = Outbox()
    q = QueueState(spec(capacity=2, onFull=policy), ["fast", "slow"])
    q.subscribe(A, "fast", 100, out)
    put(q, out, *range(1, 6))
    assert ids(out, A) == [1, 2, 3, 4, 5]  # the fast loop lost nothing
    expected = [4, 5] if policy == "dropOldest" else [1, 2]
    assert buffered(q, "slow") == expected
    assert q.counters.dropped == 3


# -- maxMessageBytes ---------------------------------------------------------------------------


def test_max_message_bytes_refuses_with_an_error_naming_queue_and_sizes() -> None:
    out = Outbox()
    q = QueueState(spec(maxMessageBytes=10), ["r"])
    q.subscribe(A, "r", 10, out)
    q.put(W, 1, b"x" * 10, b"", out)
    q.put(W, 2, b"x" * 11, b"", out)
    q.put(W, 3, b"y", b"", out)
    acks = acked(out)
    assert acks[0] == ["q", 1]
    assert acks[2] == ["q", 3]
    queue, seq, error = acks[1]
    assert (queue, seq) == ("q", 2)
    assert "maxMessageBytes" in error
    assert "'q'" in error
    assert "11 bytes" in error
    assert "(10)" in error
    assert q.counters.refused == 1
    assert q.counters.enqueued == 2
    assert [m[1] for m in delivered(out, A)] == [b"x" * 10, b"y"]


# -- durable queues ----------------------------------------------------------------------------


def test_durable_queue_comes_back_with_every_unacknowledged_message(tmp_path: Path) -> None:
    db = tmp_path / "queues.db"
    with DurableStore(db) as store:
        out = Outbox()
        q = QueueState(spec(durable=True, mode="broadcast"), ["r1", "r2"], store)
        q.subscribe(A, "r1", 3, out)
        put(q, out, *range(1, 6))
        store.commit()
        q.acknowledge(A, "r1", [1, 2], out)  # 3 stays delivered-unacknowledged
        store.commit()
        assert ids(out, A) == [1, 2, 3, 4, 5]
    with DurableStore(db) as store:
        out = Outbox()
        q = QueueState(spec(durable=True, mode="broadcast"), ["r1", "r2"], store)
        assert buffered(q, "r1") == [3, 4, 5]
        assert buffered(q, "r2") == [1, 2, 3, 4, 5]
        q.subscribe(B, "r1", 10, out)
        got = delivered(out, B)
        assert [m[0] for m in got] == [3, 4, 5]
        assert [m[1] for m in got] == [b"p3", b"p4", b"p5"]
        assert [m[2] for m in got] == [b"m3", b"m4", b"m5"]
        put(q, out, 6)  # ids keep growing across restarts
        assert ids(out, B)[-1] == 6
        store.commit()


def test_durable_work_queue_forgets_what_was_acknowledged_or_dropped(tmp_path: Path) -> None:
    db = tmp_path / "queues.db"
    with DurableStore(db) as store:
        out = Outbox()
        q = QueueState(spec(durable=True, mode="work", capacity=3, onFull="dropOldest"), [], store)
        put(q, out, *range(1, 6))  # 1 and 2 dropped
        q.subscribe(A, "any", 2, out)
        assert ids(out, A) == [3, 4]
        q.acknowledge(A, "any", [3], out)
        store.commit()
    with DurableStore(db) as store:
        q = QueueState(spec(durable=True, mode="work", capacity=3, onFull="dropOldest"), [], store)
        assert buffered(q, "*") == [4, 5]
        assert q.next_id == 6


def test_a_queue_not_durable_ignores_the_store(tmp_path: Path) -> None:
    db = tmp_path / "queues.db"
    with DurableStore(db) as store:
        out = Outbox()
        q = QueueState(spec(), ["r"], store)
        put(q, out, 1, 2)
        store.commit()
        assert store.pending("q") == []


def test_durable_messages_delivered_before_a_restart_come_back_flagged(tmp_path: Path) -> None:
    """Found by this suite: restored messages were not flagged redelivered, though they may
    have been processed before the restart."""
    db = tmp_path / "queues.db"
    with DurableStore(db) as store:
        out = Outbox()
        q = QueueState(spec(durable=True), ["r"], store)
        q.subscribe(A, "r", 1, out)
        put(q, out, 1)
        store.commit()
        assert ids(out, A) == [1]
    with DurableStore(db) as store:
        out = Outbox()
        q = QueueState(spec(durable=True), ["r"], store)
        q.subscribe(B, "r", 1, out)
        assert delivered(out, B) == [[1, b"p1", b"m1", True]]
