"""A writer's run of puts kept as one object in the hub (docs/messaging.md, "Batches"): credit,
acknowledgements, give-backs, pauses and lost consumers cut it into pieces, and every message
still goes out once, in order, with its own id, payload, meta and redelivered flag. QueueState
and the hub's frame encoder without sockets."""

from __future__ import annotations

import time
from typing import Any

import zmq

from ostinato._messaging._hub import Hub, _msgs
from ostinato._messaging._queues import Outbox, QueueState, Run
from ostinato._messaging._wire import BATCH_BYTES, TO_HUB, decode, encode, pack, parse
from ostinato._model._spec import QueueSpec

from .test_acks import dealers

W = b"writer"
A = b"consumer-a"
B = b"consumer-b"


def spec(**settings: Any) -> QueueSpec:
    return QueueSpec.model_validate({"name": "q", **settings})


def frame(n: int, first: int = 1) -> tuple[list[bytes], list[bytes]]:
    """A put frame's payloads (p<seq>) and its one meta."""
    return [b"p%d" % s for s in range(first, first + n)], [b"meta"]


def ids(out: Outbox, consumer: bytes) -> list[int]:
    return [row[0] for row in out.messages.get((consumer, "q"), [])]


def flags(out: Outbox, consumer: bytes) -> list[bool]:
    return [row[3] for row in out.messages.get((consumer, "q"), [])]


def held(q: QueueState, group: str, consumer: bytes) -> list[int]:
    return sorted(q.groups[group].consumers[consumer].inflight)


def buffered(q: QueueState, group: str) -> list[int]:
    return [m.id for m in q.groups[group].buffer]


def test_a_run_is_one_object_in_the_buffer_and_among_the_deliveries() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    payloads, metas = frame(64)
    q.put_run(W, 1, payloads, metas, None, out)
    assert out.runs[W] == [("q", 1, 64)]  # acknowledged as one run
    assert len(q.groups["r"].runs) == 1
    assert q.groups["r"].runs[0].payloads is payloads  # the frame's own list, not a copy
    q.subscribe(A, "r", 100, out)
    [delivered] = out.deliveries[(A, "q")]
    assert (delivered.lo, delivered.hi) == (1, 64)
    assert list(q.groups["r"].consumers[A].held) == [1]
    assert q.in_flight() == [64]
    assert q.counters.delivered == 64


def test_a_run_split_by_credit_goes_out_in_pieces_in_order() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 3, out)
    q.put_run(W, 1, *frame(10), None, out)
    assert ids(out, A) == [1, 2, 3]
    assert buffered(q, "r") == list(range(4, 11))
    assert q.depth == 7
    for lo in (4, 7):
        out.clear()
        q.acknowledge_runs(A, "r", [[lo - 3, lo - 1]], out)
        assert ids(out, A) == [lo, lo + 1, lo + 2]
    out.clear()
    q.acknowledge_runs(A, "r", [[7, 9]], out)
    assert ids(out, A) == [10]
    assert [row[1] for row in out.messages[(A, "q")]] == [b"p10"]
    q.acknowledge_runs(A, "r", [[10, 10]], out)
    assert q.counters.acknowledged == 10
    assert q.in_flight() == [0]
    assert q.depth == 0


def test_a_partial_acknowledgement_of_a_run_frees_that_much_credit_and_keeps_the_rest() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 10, out)
    q.put_run(W, 1, *frame(14), None, out)
    assert ids(out, A) == list(range(1, 11))
    out.clear()
    q.acknowledge_runs(A, "r", [[3, 5]], out)  # the middle of the run
    assert q.counters.acknowledged == 3
    assert ids(out, A) == [11, 12, 13]  # the credit it freed
    assert held(q, "r", A) == [1, 2, 6, 7, 8, 9, 10, 11, 12, 13]
    out.clear()
    # Its head, ids not held (again, and past the end), and the run's tail across two pieces.
    q.acknowledge_runs(A, "r", [[1, 1], [3, 4], [9, 12], [20, 30]], out)
    assert q.counters.acknowledged == 3 + 5
    assert held(q, "r", A) == [2, 6, 7, 8, 13, 14]  # 14: the one left, for the credit freed
    assert ids(out, A) == [14]
    q.acknowledge(A, "r", [13, 2, 8, 7, 6, 6, 14], out)
    assert q.counters.acknowledged == 14
    assert held(q, "r", A) == []
    assert q.in_flight() == [0]


def test_giving_back_part_of_a_run_redelivers_that_part_first_flagged() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 8, out)
    q.put_run(W, 1, *frame(12), None, out)
    assert ids(out, A) == list(range(1, 9))
    out.clear()
    q.give_back(A, "w", [7, 3, 4, 99], out)  # 99: not held, ignored
    # A has that credit back at once and is the only consumer: the given-back go first.
    assert ids(out, A) == [3, 4, 7]
    assert flags(out, A) == [True, True, True]
    assert [row[1] for row in out.messages[(A, "q")]] == [b"p3", b"p4", b"p7"]
    assert q.counters.redelivered == 3
    assert held(q, "*", A) == list(range(1, 9))
    assert buffered(q, "*") == [9, 10, 11, 12]
    out.clear()
    q.acknowledge_runs(A, "w", [[1, 8]], out)
    assert ids(out, A) == [9, 10, 11, 12]
    assert flags(out, A) == [False] * 4
    assert q.counters.acknowledged == 8


def test_a_lost_consumer_holding_part_of_a_run_gives_that_part_to_another() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 10, out)
    q.put_run(W, 1, *frame(12), None, out)
    q.acknowledge_runs(A, "w", [[1, 4]], out)  # A holds 5..12 of the run (a piece)
    assert held(q, "*", A) == list(range(5, 13))
    out.clear()
    assert q.lost(A, out) == 8
    assert buffered(q, "*") == list(range(5, 13))
    assert all(m.redelivered for m in q.groups["*"].buffer)
    q.subscribe(B, "w", 5, out)
    assert ids(out, B) == [5, 6, 7, 8, 9]
    assert flags(out, B) == [True] * 5
    assert [row[1] for row in out.messages[(B, "q")]] == [b"p%d" % i for i in range(5, 10)]
    assert q.counters.redelivered == 8
    # Acknowledgements of the lost consumer count for nothing.
    q.acknowledge_runs(A, "w", [[5, 12]], out)
    assert q.counters.acknowledged == 4


def test_a_released_piece_comes_back_in_order_before_the_rest_of_its_run() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 6, out)
    q.put_run(W, 1, *frame(10), None, out)
    q.acknowledge_runs(A, "r", [[1, 2]], out)  # 3..8 held, 9 and 10 waiting
    out.clear()
    q.release(A, "r", out)
    assert buffered(q, "r") == list(range(3, 11))
    assert [m.redelivered for m in q.groups["r"].buffer] == [True] * 6 + [False] * 2
    assert q.counters.redelivered == 6
    assert not out.messages  # released: no credit until it subscribes again
    q.subscribe(A, "r", 100, out)
    assert ids(out, A) == list(range(3, 11))


def test_a_piece_given_back_in_one_reading_loop_is_not_flagged_in_another() -> None:
    out = Outbox()
    q = QueueState(spec(mode="broadcast"), ["r1", "r2"])
    q.subscribe(A, "r1", 4, out)
    q.put_run(W, 1, *frame(4), None, out)
    assert q.groups["r1"].consumers[A].held[1] is q.groups["r2"].runs[0]  # one run for both
    q.give_back(A, "r1", [2, 3], out)
    out.clear()
    q.subscribe(B, "r2", 10, out)
    assert ids(out, B) == [1, 2, 3, 4]
    assert flags(out, B) == [False] * 4


def test_two_consumers_with_credit_take_one_message_of_a_run_each_in_turn() -> None:
    out = Outbox()
    q = QueueState(spec(mode="work"), ["w"])
    q.subscribe(A, "w", 2, out)
    q.subscribe(B, "w", 5, out)
    q.put_run(W, 1, *frame(8), None, out)
    a, b = ids(out, A), ids(out, B)
    assert len(a) == 2
    assert len(b) == 5
    assert sorted(a + b) == list(range(1, 8))
    assert {tuple(sorted(pair)) for pair in zip(a, b[:2], strict=True)} == {(1, 2), (3, 4)}
    assert b[2:] == [5, 6, 7]  # A out of credit: B takes the rest of its share at once
    assert buffered(q, "*") == [8]


def test_a_run_with_a_meta_each_or_indexed_metas_keeps_each_message_s_meta() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 3, out)
    q.put_run(W, 1, [b"a", b"b", b"c", b"d"], [b"m1", b"m2", b"m3", b"m4"], None, out)
    q.put_run(W, 5, [b"e", b"f", b"g"], [b"x", b"y"], [1, 0, 1], out)
    assert [row[2] for row in out.messages[(A, "q")]] == [b"m1", b"m2", b"m3"]
    q.subscribe(A, "r", 100, out)
    rows = out.messages[(A, "q")]
    assert [row[0] for row in rows] == list(range(1, 8))
    assert [row[1] for row in rows] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]
    assert [row[2] for row in rows] == [b"m1", b"m2", b"m3", b"m4", b"y", b"x", b"y"]


def test_runs_too_full_or_too_large_for_one_go_are_taken_one_by_one_as_before() -> None:
    out = Outbox()
    q = QueueState(spec(capacity=3, onFull="dropOldest", maxMessageBytes=5), ["r"])
    q.put_run(W, 1, [b"1", b"too-large", b"3", b"4", b"5"], [b""], None, out)
    assert out.acks[W][1][:2] == ["q", 2]
    assert "maxMessageBytes" in out.acks[W][1][2]
    assert [a[1] for a in out.acks[W] if len(a) == 2] == [1, 3, 4, 5]
    assert buffered(q, "r") == [2, 3, 4]  # ids of the accepted; the oldest one dropped
    assert q.counters.dropped == 1


# -- the frames of a round's deliveries --------------------------------------------------------


def decoded(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hub's messages as a reader's socket gets them: packed, then parsed."""
    return [parse(pack(m)) for m in messages if m["t"] not in TO_HUB]


def test_deliveries_of_several_runs_are_one_frame_with_metas_once_and_flags_by_position() -> None:
    one, each = b"one", [b"e1", b"e2", b"e3"]
    runs = [
        Run(1, 3, [b"a", b"b", b"c", b"d"], 1, one, 7),  # a piece: b, c, d
        Run(9, 9, [b"x"], 0, each, 3, True),  # a lone message, redelivered, meta e1
        Run(10, 11, [b"y", b"z", b"w"], 1, each, 7, True),  # z, w with e2, e3
    ]
    [msg] = decoded(_msgs("q", runs))
    assert msg["ids"] == [1, 2, 3, 9, 10, 11]
    assert msg["payloads"] == [b"b", b"c", b"d", b"x", b"z", b"w"]
    assert [msg["metas"][i] for i in msg["meta"]] == [one] * 3 + [b"e1", b"e2", b"e3"]
    assert msg["redelivered"] == [3, 4, 5]
    [whole] = decoded(_msgs("q", [Run(5, 8, [b"1", b"2", b"3", b"4"], 0, one, 16, True)]))
    assert whole["ids"] == [5, 6, 7, 8]
    assert whole["metas"] == [one]
    assert "meta" not in whole
    assert whole["redelivered"] == [0, 1, 2, 3]
    [lone] = decoded(_msgs("q", [Run(4, 4, [b"p", b"q"], 1, [b"m", b"n"], 2)]))
    assert (lone["ids"], lone["payloads"], lone["metas"]) == ([4], [b"q"], [b"n"])
    assert "redelivered" not in lone


def test_a_run_larger_than_batch_bytes_goes_out_in_several_frames() -> None:
    payload = b"x" * (BATCH_BYTES // 3)
    runs = [
        Run(1, 7, [payload] * 7, 0, b"m", 7 * (len(payload) + 1)),
        Run(8, 8, [b"small"], 0, [b"m2"], 7, True),
    ]
    frames = _msgs("q", runs)
    msgs = decoded(frames)
    assert len(msgs) > 1
    assert [i for m in msgs for i in m["ids"]] == list(range(1, 9))
    for m in msgs:
        assert sum(map(len, m["payloads"])) <= BATCH_BYTES
    assert msgs[-1]["redelivered"] == [len(msgs[-1]["ids"]) - 1]


def test_metas_go_out_as_the_writer_sent_them_one_each_shared_or_indexed() -> None:
    a, b = b"meta-a", b"meta-b"
    q = QueueState(spec(), ["r"])
    out = Outbox()
    q.put_run(W, 1, [b"1", b"2", b"3"], [b"x", b"y", b"z"], None, out)  # one each
    q.put_run(W, 4, [b"4", b"5", b"6", b"7"], [a, b], [0, 1, 1, 0], out)  # indexed
    one_each, indexed = q.groups["r"].runs
    [msg] = decoded(_msgs("q", [one_each]))
    assert (msg["metas"], "meta" in msg) == ([b"x", b"y", b"z"], False)
    [msg] = decoded(_msgs("q", [indexed.piece(5, 7)]))
    assert msg["payloads"] == [b"5", b"6", b"7"]
    assert [msg["metas"][i] for i in msg["meta"]] == [b, b, a]
    assert len(msg["metas"]) == 2  # each once
    # Lone runs that share a meta object send it once; with the others, each where it was.
    lone = Run(8, 8, [b"8"], 0, a, 7)
    [msg] = decoded(_msgs("q", [lone, Run(9, 9, [b"9"], 0, a, 7)]))
    assert (msg["metas"], "meta" in msg) == ([a], False)
    [msg] = decoded(_msgs("q", [one_each, indexed, lone]))
    assert msg["ids"] == list(range(1, 9))
    metas = [msg["metas"][i] for i in msg["meta"]]
    assert metas == [b"x", b"y", b"z", a, b, b, a, a]
    assert len(msg["metas"]) == 5


def test_what_stays_held_of_a_mostly_acknowledged_run_keeps_only_its_own_payloads() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 100, out)
    payloads, metas = frame(10)
    q.put_run(W, 1, payloads, metas, None, out)
    q.acknowledge_runs(A, "r", [[1, 4]], out)  # 6 of 10 left: a piece of the frame's list
    assert q.groups["r"].consumers[A].held[5].payloads is payloads
    q.acknowledge_runs(A, "r", [[5, 8]], out)  # 2 of 10 left: cut to its own
    [rest] = q.groups["r"].consumers[A].held.values()
    assert (rest.lo, rest.hi, rest.payloads) == (9, 10, [b"p9", b"p10"])
    q.acknowledge_runs(A, "r", [[9, 10]], out)
    assert q.counters.acknowledged == 10


def test_an_acknowledgement_inside_a_run_among_many_lone_ones_finds_it() -> None:
    out = Outbox()
    q = QueueState(spec(), ["r"])
    q.subscribe(A, "r", 100, out)
    for seq in range(1, 21):  # twenty lone messages, then a run of six
        q.put_run(W, seq, [b"p%d" % seq], [b"m"], None, out)
    q.put_run(W, 21, *frame(6, first=21), None, out)
    assert len(q.groups["r"].consumers[A].held) == 21
    q.acknowledge_runs(A, "r", [[23, 24], [0, 0], [30, 40], [5, 5]], out)
    assert q.counters.acknowledged == 3
    assert held(q, "r", A) == [*range(1, 5), *range(6, 23), 25, 26]
    q.acknowledge_runs(A, "r", [[26, 26], [22, 22]], out)  # the end, the head of the pieces
    assert held(q, "r", A) == [*range(1, 5), *range(6, 22), 25]
    q.acknowledge_runs(A, "r", [[1, 30]], out)
    assert q.counters.acknowledged == 26
    assert held(q, "r", A) == []
    assert q.groups["r"].consumers[A].longest == 1


# -- over the wire: a real hub and raw DEALERs -------------------------------------------------


def test_a_hub_cuts_a_frame_of_puts_by_credit_and_redelivers_a_part_given_back() -> None:
    hub = Hub([QueueSpec.model_validate({"name": "q", "mode": "work"})], {"q": ["r"]})
    try:
        with dealers(hub.endpoint) as dealer:
            writer, reader = dealer(b"writer"), dealer(b"reader")
            reader.send(encode("sub", q="q", loop="r", credit=5))
            payloads = [b"p%d" % i for i in range(1, 13)]
            writer.send(
                encode("puts", q="q", seq=1, payloads=payloads, metas=[b"m"], since=1, epoch=1)
            )
            assert answer(writer, "acks")["runs"] == [[1, 12]]  # one run, acknowledged as one
            first = answer(reader, "msgs")
            assert (first["ids"], first["payloads"]) == ([1, 2, 3, 4, 5], payloads[:5])
            assert (first["metas"], "meta" in first, "redelivered" in first) == (
                [b"m"],
                False,
                False,
            )
            # 2 and 4 given back, 1 acknowledged: three credits, the given-back first, flagged.
            reader.send(encode("giveBack", q="q", loop="r", ids=[4, 2]))
            reader.send(encode("ack", q="q", loop="r", runs=[[1, 1]]))
            got = answer(reader, "msgs", until=3)
            assert got["ids"] == [2, 4, 6]
            assert got["payloads"] == [b"p2", b"p4", b"p6"]
            assert got["redelivered"] == [0, 1]
            reader.send(encode("ack", q="q", loop="r", runs=[[2, 6]]))
            rest = answer(reader, "msgs", until=5)
            assert rest["ids"] == [7, 8, 9, 10, 11]
            reader.send(encode("ack", q="q", loop="r", runs=[[7, 11]]))
            assert answer(reader, "msgs")["ids"] == [12]
            reader.send(encode("ack", q="q", loop="r", runs=[[12, 12]]))
            reader.send(encode("ping"))
            answer(reader, "pong")  # the hub handled the ack before the ping (one peer, in order)
            status = hub.queue_status()["q"]
            assert (status["enqueued"], status["acknowledged"], status["redelivered"]) == (
                12,
                12,
                2,
            )
            assert (status["depth"], hub.queues["q"].in_flight()) == (0, [0])
    finally:
        hub.close()


def answer(sock: zmq.Socket[Any], kind: str, until: int = 1) -> dict[str, Any]:
    """The frames of ``kind`` this socket gets (others skipped) merged, until ``until`` ids
    (a msgs frame) or one frame came, within 10 s of polling."""
    deadline = time.monotonic() + 10.0
    merged: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if not sock.poll(20):
            continue
        msg = decode(sock.recv())
        if msg["t"] != kind:
            continue
        if kind != "msgs":
            return msg
        offset = len(merged.get("ids", []))
        for key in ("ids", "payloads"):
            merged.setdefault(key, []).extend(msg[key])
        merged.setdefault("metas", msg["metas"])
        if "meta" in msg:
            merged["meta"] = msg["meta"]
        if "redelivered" in msg:
            merged.setdefault("redelivered", []).extend(i + offset for i in msg["redelivered"])
        if len(merged["ids"]) >= until:
            return merged
    raise AssertionError(f"no {kind!r} within 10 s")
