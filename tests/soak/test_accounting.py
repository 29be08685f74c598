"""The soak's accounting over synthetic records: what counts as lost, duplicated, out of order."""

from __future__ import annotations

import pytest

from soak.accounting import count_messages, heal_times
from soak.chaos import Fault
from soak.records import Identity, ReaderLog, Receipt, WriterLog

MODES = {"jobs": "work", "events": "broadcast"}
READING = {"jobs": ["worker"], "events": ["monitor"]}

pytestmark = pytest.mark.timeout(30)


def writer(inc: str, written: range, acked: range | list[int], started: float = 0.0) -> WriterLog:
    log = WriterLog(Identity("writer", "writer", "host", 1, inc, started))
    log.written = {s: 100.0 + s for s in written}
    log.acked = {s: 100.5 + s for s in acked}
    return log


def reader(
    loop: str,
    inc: str,
    got: list[tuple[str, str, int]],
    started: float = 0.0,
    host: str = "host",
    pid: int = 2,
    redelivered: frozenset[int] = frozenset(),
) -> ReaderLog:
    receipts = [
        Receipt(q, w, s, i, s in redelivered, 100.0 + s, 200.0 + i)
        for i, (q, w, s) in enumerate(got)
    ]
    return ReaderLog(Identity("reader", loop, host, pid, inc, started), receipts)


def group(messages, queue: str):  # type: ignore[no-untyped-def]
    (found,) = [g for g in messages.groups if g.queue == queue]
    return found


def test_every_acknowledged_message_received_once_counts_nothing_wrong() -> None:
    w = writer("w1", range(1, 4), range(1, 4))
    work = reader("worker", "r1", [("jobs", "w1", 1), ("jobs", "w1", 3)])
    work2 = reader("worker", "r2", [("jobs", "w1", 2)])
    mon = reader("monitor", "r3", [("events", "w1", s) for s in (1, 2, 3)])
    m = count_messages([w], [work, work2, mon], MODES, READING)
    for g in m.groups:
        assert (g.written, g.acked, g.received) == (3, 3, 3), g
        assert (g.lost, g.duplicated, g.out_of_order, g.phantom) == (0, 0, 0, 0), g
    assert m.total("received") == 6


def test_an_acknowledged_message_no_reader_got_is_lost_in_that_group_only() -> None:
    w = writer("w1", range(1, 4), range(1, 4))
    work = reader("worker", "r1", [("jobs", "w1", 1), ("jobs", "w1", 3)])
    mon = reader("monitor", "r3", [("events", "w1", s) for s in (1, 2, 3)])
    m = count_messages([w], [work, mon], MODES, READING)
    assert group(m, "jobs").lost == 1
    assert group(m, "jobs").lost_examples == [("w1", 2)]
    assert group(m, "events").lost == 0
    assert m.total("lost") == 1


def test_unacknowledged_messages_are_told_apart_from_lost_ones() -> None:
    # 3 was in flight when the writer died: never acknowledged. 4 too, but it arrived.
    w = writer("w1", range(1, 5), [1, 2])
    mon = reader("monitor", "r", [("events", "w1", s) for s in (1, 2, 4)])
    m = count_messages([w], [mon], MODES, {"events": ["monitor"]})
    g = group(m, "events")
    assert (g.lost, g.unacked_lost, g.unacked_received) == (0, 1, 1)


def test_duplicates_count_per_group_and_say_how_many_were_marked_redelivered() -> None:
    w = writer("w1", range(1, 3), range(1, 3))
    # The work queue's two readers both got 2 (one had it when it was lost): one duplicate.
    r1 = reader("worker", "r1", [("jobs", "w1", 1), ("jobs", "w1", 2)])
    r2 = reader("worker", "r2", [("jobs", "w1", 2)], redelivered=frozenset({2}))
    # The broadcast group got 1 twice from the hub after its restart.
    mon = reader("monitor", "r3", [("events", "w1", 1), ("events", "w1", 2), ("events", "w1", 1)])
    m = count_messages([w], [r1, r2, mon], MODES, READING)
    assert (group(m, "jobs").duplicated, group(m, "jobs").duplicated_redelivered) == (1, 1)
    assert (group(m, "events").duplicated, group(m, "events").duplicated_redelivered) == (1, 0)
    assert group(m, "jobs").received == 2


def test_out_of_order_is_per_reader_incarnation_and_per_writer_incarnation() -> None:
    a = writer("wa", range(1, 6), range(1, 6))
    b = writer("wb", range(1, 3), range(1, 3))
    got = [
        ("events", "wa", 1),
        ("events", "wa", 3),
        ("events", "wb", 1),  # another writer incarnation: its own stream
        ("events", "wa", 2),  # out of order
        ("events", "wa", 3),  # a duplicate, not out of order again
        ("events", "wb", 2),
        ("events", "wa", 4),
    ]
    first = reader("monitor", "r1", got)
    # A new reader incarnation starts its own order: 5 after its predecessor's 4 is fine.
    second = reader("monitor", "r2", [("events", "wa", 5)])
    m = count_messages([a, b], [first, second], MODES, {"events": ["monitor"]})
    g = group(m, "events")
    assert (g.out_of_order, g.duplicated, g.lost) == (1, 1, 0)


def test_a_restarted_writer_numbers_from_one_again_without_duplicates() -> None:
    old = writer("w-old", range(1, 4), range(1, 4))
    new = writer("w-new", range(1, 3), range(1, 3))
    got = [("events", "w-old", s) for s in (1, 2, 3)] + [("events", "w-new", s) for s in (1, 2)]
    m = count_messages([old, new], [reader("monitor", "r", got)], MODES, {"events": ["monitor"]})
    g = group(m, "events")
    assert (g.written, g.received, g.duplicated, g.out_of_order, g.lost) == (5, 5, 0, 0, 0)


def test_a_broadcast_queue_expects_every_message_in_every_reading_loop() -> None:
    w = writer("w1", range(1, 3), range(1, 3))
    one = reader("monitor", "r1", [("events", "w1", 1), ("events", "w1", 2)])
    other = reader("audit", "r2", [("events", "w1", 1)])
    m = count_messages([w], [one, other], MODES, {"events": ["monitor", "audit"]})
    assert {g.group: g.lost for g in m.groups} == {"monitor": 0, "audit": 1}


def test_a_message_no_writer_wrote_is_a_phantom() -> None:
    w = writer("w1", range(1, 2), range(1, 2))
    got = [("events", "w1", 1), ("events", "w1", 7), ("events", "nobody", 1)]
    m = count_messages([w], [reader("monitor", "r", got)], MODES, {"events": ["monitor"]})
    assert group(m, "events").phantom == 2


def test_throughput_buckets_count_first_receipts() -> None:
    w = writer("w1", range(1, 4), range(1, 4))
    got = [("events", "w1", 1), ("events", "w1", 2), ("events", "w1", 2), ("events", "w1", 3)]
    log = reader("monitor", "r", got)
    log.receipts = [
        Receipt(r.queue, r.writer, r.seq, i, False, 0.0, at)
        for i, (r, at) in enumerate(zip(log.receipts, (1.0, 4.0, 5.0, 23.0), strict=True))
    ]
    m = count_messages([w], [log], MODES, {"events": ["monitor"]}, bucket_seconds=10)
    assert m.throughput == [(0.0, 2), (10.0, 0), (20.0, 1)]


def _fault(kind: str, at: float, **extra: object) -> Fault:
    fields = {"kind": kind, "target": "t", "how": "delete", "at": at, "replaced_at": at + 2}
    return Fault.model_validate({**fields, **extra})


def test_a_loop_fault_heals_when_its_replacement_s_messages_flow() -> None:
    old = writer("w-old", range(1, 3), range(1, 3), started=0.0)
    new_writer = WriterLog(Identity("writer", "writer", "soak-writer-0", 1, "w-new", 150.0))
    new_writer.written = {1: 160.0}
    new_writer.acked = {1: 160.5}
    reading = ReaderLog(
        Identity("reader", "monitor", "soak-monitor-0", 1, "r", 0.0),
        [
            Receipt("events", "w-old", 1, 1, False, 101.0, 120.0),
            Receipt("events", "w-new", 1, 2, False, 160.0, 161.0),
        ],
    )
    fault = _fault("loop", 140.0, loop="writer", match_host="soak-writer-0")
    (heal,) = heal_times([fault], [old, new_writer], [reading])
    assert heal.replaced_seconds == pytest.approx(2.0)
    assert heal.flowing_seconds == pytest.approx(21.0)


def test_a_reader_fault_heals_at_the_first_receipt_of_the_new_process() -> None:
    before = reader("worker", "r-old", [("jobs", "w", 1)], started=0.0, pid=10)
    after = reader("worker", "r-new", [("jobs", "w", 2)], started=150.0, pid=11)
    other = reader("worker", "r-other", [("jobs", "w", 3)], started=151.0, pid=12)
    fault = _fault("loop", 145.0, loop="worker", match_pid=11)
    (heal,) = heal_times([fault], [], [before, after, other])
    # after's first receipt is at 200.0 (its index 0): 55 s after the fault
    assert heal.flowing_seconds == pytest.approx(55.0)


def test_a_hub_fault_heals_when_every_queue_delivers_a_message_written_after_it() -> None:
    receipts = ReaderLog(
        Identity("reader", "worker", "h", 1, "r", 0.0),
        [
            Receipt("jobs", "w", 1, 1, False, 99.0, 101.0),  # written before: no proof
            Receipt("jobs", "w", 2, 2, False, 103.0, 104.0),
        ],
    )
    events = ReaderLog(
        Identity("reader", "monitor", "h", 2, "r2", 0.0),
        [Receipt("events", "w", 2, 2, False, 103.0, 107.5)],
    )
    (heal,) = heal_times([_fault("hub", 100.0)], [], [receipts, events])
    assert heal.flowing_seconds == pytest.approx(7.5)
    assert heal.healed_seconds == pytest.approx(7.5)
    # A hub deleted without grace serves on for a moment: what it delivered before its
    # successor ran proves nothing.
    (late,) = heal_times([_fault("hub", 100.0, replaced_at=105.0)], [], [receipts, events])
    assert late.flowing_seconds is None
    (never,) = heal_times([_fault("hub", 200.0)], [], [receipts, events])
    assert never.flowing_seconds is None
    (operator,) = heal_times([_fault("operator", 100.0)], [], [receipts])
    assert (operator.replaced_seconds, operator.flowing_seconds) == (2.0, None)
