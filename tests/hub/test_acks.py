"""Acknowledgements as runs (docs/messaging.md, "Transports and security"): the hub acknowledges
a writer's puts as runs [lo, hi] with the refused ones apart, a reader acknowledges runs of ids
with gaps, and a hub takes a writer's puts only in order, asking for the missing ones again
(rewind). Raw DEALERs against a real hub, so each frame is seen as it is."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
import zmq

from ostinato._messaging._client import HubClient
from ostinato._messaging._hub import Hub
from ostinato._messaging._wire import decode, encode
from ostinato._model._ports import QueueError
from ostinato._model._spec import QueueSpec

WAIT = 10.0


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub(
        [
            QueueSpec.model_validate({"name": "w", "mode": "work", "maxMessageBytes": 10}),
            QueueSpec.model_validate({"name": "b", "mode": "broadcast"}),
        ],
        {"w": ["r"], "b": ["r"]},
    )
    yield hub
    hub.close()


@contextmanager
def dealers(endpoint: str) -> Iterator[Callable[[bytes], zmq.Socket[Any]]]:
    """Makes DEALERs connected to ``endpoint``, one per identity; all closed on the way out."""
    ctx = zmq.Context()
    sockets: list[zmq.Socket[Any]] = []

    def make(identity: bytes) -> zmq.Socket[Any]:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sockets.append(sock)
        return sock

    try:
        yield make
    finally:
        for sock in sockets:
            sock.close(linger=0)
        ctx.term()


@pytest.fixture
def dealer(hub: Hub) -> Iterator[Callable[[bytes], zmq.Socket[Any]]]:
    with dealers(hub.endpoint) as make:
        yield make


def answer(sock: zmq.Socket[Any], kind: str) -> dict[str, Any]:
    """The next frame of ``kind`` this socket gets (others are skipped), within WAIT."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if sock.poll(20):
            msg = decode(sock.recv())
            if msg["t"] == kind:
                return msg
    raise AssertionError(f"no {kind!r} within {WAIT}s")


def puts(q: str, seq: int, payloads: list[bytes], since: int, epoch: int = 1) -> bytes:
    return encode("puts", q=q, seq=seq, payloads=payloads, metas=[b""], since=since, epoch=epoch)


def test_a_writer_s_puts_are_acknowledged_as_runs_around_the_refused(hub: Hub, dealer: Any) -> None:
    writer = dealer(b"writer")
    payloads = [b"x" * (50 if seq in (5, 8) else 3) for seq in range(1, 11)]  # 5, 8 too large
    writer.send(puts("w", 1, payloads, since=1))
    acks = answer(writer, "acks")
    assert acks["q"] == "w"
    assert acks["runs"] == [[1, 4], [6, 7], [9, 10]]
    assert [r[0] for r in acks["refused"]] == [5, 8]
    assert all("exceeds maxMessageBytes" in r[1] for r in acks["refused"])
    assert hub.queue_status()["w"]["enqueued"] == 8
    assert hub.queue_status()["w"]["refused"] == 2


def test_a_refused_put_sent_again_is_refused_again_not_acknowledged(hub: Hub, dealer: Any) -> None:
    writer = dealer(b"writer")
    writer.send(puts("w", 1, [b"x" * 50, b"ok"], since=1))  # 1 too large
    first = answer(writer, "acks")
    assert first["runs"] == [[2, 2]]
    assert [r[0] for r in first["refused"]] == [1]
    # The writer had not heard (a reconnection, say) and sends both again: the hub has them,
    # so it takes neither twice and answers as it did the first time.
    writer.send(puts("w", 1, [b"x" * 50, b"ok"], since=1))
    again = answer(writer, "acks")
    assert again["runs"] == [[2, 2]]
    assert again["refused"] == first["refused"]
    assert hub.queue_status()["w"]["enqueued"] == 1
    assert hub.queue_status()["w"]["refused"] == 1
    # Once the writer's oldest unsettled put is past it, the hub forgets the refusal.
    writer.send(puts("w", 3, [b"ok"], since=3))
    assert answer(writer, "acks")["runs"] == [[3, 3]]
    assert hub._writers[b"writer"]["w"].refused == {}


def test_a_reader_acknowledges_runs_with_gaps_and_a_long_run_costs_what_it_names(
    hub: Hub, dealer: Any
) -> None:
    writer, reader = dealer(b"writer"), dealer(b"reader")
    reader.send(encode("sub", q="w", loop="r", credit=10))
    writer.send(puts("w", 1, [b"%d" % i for i in range(12)], since=1))
    msgs = answer(reader, "msgs")
    assert msgs["ids"] == list(range(1, 11))  # credit for 10
    reader.send(encode("ack", q="w", loop="r", runs=[[1, 3], [7, 8]]))
    writer.send(encode("ping"))
    answer(writer, "pong")  # the hub handled the ack before the ping (one peer, in order)
    assert until(lambda: hub.queue_status()["w"]["acknowledged"] == 5)
    held = set(hub.queues["w"].groups["*"].consumers[b"reader"].inflight)
    assert held == {4, 5, 6, 9, 10, 11, 12}  # the gaps, and the two the freed credit brought
    # Ids it does not hold are ignored; a run far longer than what is held walks what is held.
    reader.send(encode("ack", q="w", loop="r", runs=[[1, 3], [0, 2**62]]))
    assert until(lambda: hub.queue_status()["w"]["acknowledged"] == 12)
    assert until(lambda: hub.queue_status()["w"]["depth"] == 0)


def test_puts_out_of_order_are_refused_with_a_rewind_and_taken_once_in_order(
    hub: Hub, dealer: Any
) -> None:
    writer = dealer(b"writer")
    # New to this hub (it restarted, say) and not from the writer's oldest unacknowledged:
    # nothing is taken, the writer is asked for its puts from 3 on.
    writer.send(puts("b", 5, [b"e", b"f"], since=3))
    assert answer(writer, "rewind") == {"v": 2, "t": "rewind", "q": "b", "seq": 3}
    assert hub.queue_status()["b"]["enqueued"] == 0
    writer.send(puts("b", 3, [b"c", b"d"], since=3))
    assert answer(writer, "acks")["runs"] == [[3, 4]]
    # 4 again (the writer had no ack for it) with 5 and 6: 4 is acknowledged, not taken twice.
    writer.send(puts("b", 4, [b"d", b"e", b"f"], since=4))
    assert answer(writer, "acks")["runs"] == [[4, 6]]
    assert hub.queue_status()["b"]["enqueued"] == 4  # 3, 4, 5, 6 once each
    # A gap (7 and 8 never came): a rewind to 7, nothing taken.
    writer.send(puts("b", 9, [b"i"], since=9))
    assert answer(writer, "rewind")["seq"] == 7
    assert hub.queue_status()["b"]["enqueued"] == 4
    # A new connection of the same identity (another epoch) numbers from 1 again.
    writer.send(puts("b", 1, [b"a"], since=1, epoch=2))
    assert answer(writer, "acks")["runs"] == [[1, 1]]
    assert hub.queue_status()["b"]["enqueued"] == 5


def test_a_client_settles_each_put_by_the_runs_and_refusals_it_gets(hub: Hub) -> None:
    writer = HubClient(hub.endpoint, b"client-writer", loop="x", heartbeat=0.2)
    writer.start()
    try:
        futures: list[Future[None]] = [
            writer.put("w", b"x" * (50 if i in (3, 7) else 2), b"") for i in range(10)
        ]
        for i, fut in enumerate(futures):
            if i in (3, 7):
                with pytest.raises(QueueError, match="exceeds maxMessageBytes"):
                    fut.result(WAIT)
            else:
                assert fut.result(WAIT) is None
    finally:
        writer.close()


def until(predicate: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True
