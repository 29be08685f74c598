"""Loops in the hub's process reach it through a link (``_local``), not a socket: the order of
what a linked loop and the hub's own thread both send to one socket peer, loops sharing one
event loop, and a hub that closes under a linked loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ostinato._messaging._channel import DATA_SUFFIX
from ostinato._messaging._client import HubClient
from ostinato._messaging._hub import Hub
from ostinato._messaging._local import LocalLink, hub_at
from ostinato._messaging._store import DurableStore
from ostinato._messaging._wire import FROM_HUB, Kind, envelope, pack, parse
from ostinato._model._spec import QueueSpec

from .test_channel import read, work_hub, write, write_and_read

WAIT = 20.0


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = work_hub(lost_after=5.0)
    yield hub
    hub.close()


def test_a_client_of_the_hubs_process_gets_a_link_and_one_elsewhere_a_socket(hub: Hub) -> None:
    assert hub_at(hub.inproc) is hub
    linked = HubClient(hub.inproc, b"w/0/a", loop="w", ctx=hub.ctx)
    socketed = HubClient(hub.endpoint, b"w/0/b", loop="w", ctx=hub.ctx)
    try:
        assert isinstance(linked.data.sock, LocalLink)
        assert not isinstance(socketed.data.sock, LocalLink)
    finally:
        linked.close(timeout=5)
        socketed.close(timeout=5)
    assert b"w/0/a" + DATA_SUFFIX not in hub._links  # closing the link unlinks it


@pytest.mark.parametrize(
    ("writer_at", "reader_at"), [("inproc", "endpoint"), ("endpoint", "inproc")]
)
@pytest.mark.timeout(120)
def test_a_linked_loop_and_the_hubs_thread_keep_the_order_to_one_peer(
    hub: Hub, writer_at: str, reader_at: str
) -> None:
    """With a prefetch of 2, a socket reader's deliveries come both from a linked writer's
    puts (sent by the hub's thread after the writer's thread routed them) and from the hub's
    thread itself (the reader's acknowledgements free credit for what waits): one order."""
    n = 3000
    writer = HubClient(getattr(hub, writer_at), b"w/0/o", loop="w", ctx=hub.ctx, heartbeat=0.2)
    reader = HubClient(getattr(hub, reader_at), b"r/0/o", loop="r", ctx=hub.ctx, heartbeat=0.2)
    writer.start()
    reader.start()
    try:
        got = write_and_read(writer, reader, n, 10, 2)
        assert got == [b"%d" % i for i in range(n)]
    finally:
        reader.close(timeout=5)
        writer.close(timeout=5)


@pytest.mark.timeout(60)
def test_linked_loops_on_one_event_loop_wake_each_other(hub: Hub) -> None:
    """A put routed inside one link's send must still signal another link of the same thread
    (asyncio loops can share an event loop): nothing may wait for a signal never written."""
    n = 500
    writer = HubClient(hub.inproc, b"w/0/s", loop="w", ctx=hub.ctx, heartbeat=0.2)
    reader = HubClient(hub.inproc, b"r/0/s", loop="r", ctx=hub.ctx, heartbeat=0.2)
    writer.start()
    reader.start()

    async def both() -> list[bytes]:
        reading = asyncio.ensure_future(read(reader, n, 8))
        await asyncio.sleep(0)  # the reader subscribes first
        await write(writer, n + 5)
        return await asyncio.wait_for(reading, WAIT)

    try:
        assert asyncio.run(both()) == [b"%d" % i for i in range(n)]
    finally:
        reader.close(timeout=5)
        writer.close(timeout=5)


@pytest.mark.timeout(60)
def test_a_linked_put_to_a_closed_hub_goes_nowhere_and_does_not_raise() -> None:
    """As a socket's frame to a hub that has gone: the loop's thread neither fails nor waits."""
    hub = Hub([QueueSpec.model_validate({"name": "q"})], {}, lost_after=5.0)
    link = hub.link(b"w/0/c" + DATA_SUFFIX)
    put = envelope(Kind.PUTS, q="q", seq=1, payloads=[b"x"], metas=[b""], since=1, epoch=7)
    link.send(put)
    assert link.poll(int(WAIT * 1000)), "the hub did not answer the put"
    answer = link.recv()  # the message itself, as a frame of it would parse
    assert answer == parse(pack(answer), FROM_HUB)
    assert answer["t"] == Kind.ACKS
    assert answer["runs"] == [[1, 1]]
    hub.close()
    assert hub_at(hub.inproc) is None
    link.send(put)
    assert not link.poll(0)
    link.close()
    with pytest.raises(zmq.ZMQError, match="closed"):
        link.send(put)


@pytest.mark.timeout(120)
def test_a_durable_queue_between_linked_loops_commits_on_their_threads(tmp_path: Path) -> None:
    """Linked loops run the hub's routing on their own threads, store commits included:
    every put is on disk before its writer hears it acknowledged, and what readers
    acknowledged is gone from the store, as with the hub's thread."""
    n = 400
    db = tmp_path / "queues.db"
    store = DurableStore(db)
    hub = Hub(
        [QueueSpec.model_validate({"name": "q", "mode": "work", "durable": True})],
        {},
        store=store,
        lost_after=5.0,
    )
    writer = HubClient(hub.inproc, b"w/0/d", loop="w", ctx=hub.ctx, heartbeat=0.2)
    reader = HubClient(hub.inproc, b"r/0/d", loop="r", ctx=hub.ctx, heartbeat=0.2)
    writer.start()
    reader.start()
    try:
        asyncio.run(write(writer, n))  # each one acknowledged: committed, seen from elsewhere
        with DurableStore(db) as other:
            assert [row[2] for row in other.pending("q")] == [b"%d" % i for i in range(n)]
        got = asyncio.run(read(reader, n - 10, 8))
        assert got == [b"%d" % i for i in range(n - 10)]
    finally:
        reader.close(timeout=5)
        writer.close(timeout=5)
        hub.close()
        store.close()
    with DurableStore(db) as after:  # the last ten, and none of those acknowledged
        assert [row[2] for row in after.pending("q")] == [b"%d" % i for i in range(n - 10, n)]
