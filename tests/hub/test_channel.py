"""The data socket a loop's event loop owns (``_channel``): order, batched acknowledgements that
are never lost on a clean goodbye, and a silent reader that its connection's heartbeats keep;
each over a socket (a loop in another process) and over a link (a loop in the hub's process)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest

from ostinato._messaging._channel import DATA_SUFFIX, _runs
from ostinato._messaging._client import HubClient
from ostinato._messaging._hub import Hub
from ostinato._messaging._wire import runs
from ostinato._model._ports import QueueError, Settler
from ostinato._model._spec import QueueSpec

from .conftest import until

WAIT = 20.0


def work_hub(lost_after: float) -> Hub:
    """A hub of one work queue ``q`` (also tests/hub/test_local_link.py's)."""
    spec = QueueSpec.model_validate({"name": "q", "mode": "work", "capacity": 10_000})
    return Hub([spec], {}, lost_after=lost_after)


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = work_hub(lost_after=0.5)
    yield hub
    hub.close()


@pytest.fixture(params=["socket", "link"])
def endpoint(request: pytest.FixtureRequest, hub: Hub) -> str:
    """Where clients connect: the hub's ipc socket, or its inproc endpoint, which a client in
    the hub's process reaches through a link (``_local``), not a socket."""
    return hub.endpoint if request.param == "socket" else hub.inproc


async def write(client: HubClient, n: int) -> None:
    """Puts from the event loop that owns the data socket; every one acknowledged."""
    client.attach()
    loop = asyncio.get_running_loop()
    assert client.data.event_loop is loop
    acked = [loop.create_future() for _ in range(n)]
    for i, fut in enumerate(acked):
        client.put_callback("q", b"%d" % i, b"", partial(_outcome, fut))
    await asyncio.gather(*acked)


def write_and_read(
    writer: HubClient, reader: HubClient, n: int, extra: int, prefetch: int
) -> list[bytes]:
    """``n + extra`` puts from the writer's event loop while another thread's reads ``n``:
    what it read, once both are done (a failure on either side fails the test)."""
    got: list[bytes] = []
    failed: list[BaseException] = []

    def reading() -> None:
        try:
            got.extend(asyncio.run(read(reader, n, prefetch)))
        except BaseException as exc:  # reported below, in the test's thread
            failed.append(exc)

    consumer = threading.Thread(target=reading)
    consumer.start()
    asyncio.run(write(writer, n + extra))
    consumer.join(3 * WAIT)
    assert not consumer.is_alive(), "the reader did not finish"
    assert not failed, failed
    return got


def _outcome(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


async def read(client: HubClient, n: int, prefetch: int) -> list[bytes]:
    """Takes ``n`` messages and acknowledges each, as a reading loop does, then closes the
    connection at once, on the event loop (as an asyncio-pool loop does when it ends): the
    last acknowledgements are still gathered then, more messages wait in the inbox."""
    client.attach()
    inbox = client.subscribe("q", prefetch)
    got: list[bytes] = []
    while len(got) < n:
        item = inbox.take()
        if item is None:
            await asyncio.wait_for(inbox.arrival(), WAIT)
            continue
        got.append(item[1])
        client.ack("q", item[0])
    # More are on their way (the writer put n + extra): wait for one to be here, not taken.
    if not len(inbox):
        await asyncio.wait_for(inbox.arrival(), WAIT)
    assert len(inbox) > 0, "the inbox should hold messages not taken"
    client.close(timeout=5)
    return got


def test_puts_from_the_owning_event_loop_arrive_in_order_and_acks_are_not_lost(
    hub: Hub, endpoint: str
) -> None:
    n, extra, prefetch = 500, 40, 64  # acks go in batches of prefetch/4 or on an empty inbox
    writer = HubClient(endpoint, b"w/0/x", loop="w", ctx=hub.ctx, heartbeat=0.1)
    reader = HubClient(endpoint, b"r/0/x", loop="r", ctx=hub.ctx, heartbeat=0.1)
    writer.start()
    reader.start()
    try:
        got = write_and_read(writer, reader, n, extra, prefetch)
        assert got == [b"%d" % i for i in range(n)]  # FIFO from one writer, one consumer
    finally:
        reader.close(timeout=5)
        writer.close(timeout=5)
    # Every message taken was acknowledged (none comes back); those left in the inbox did.
    assert until(lambda: hub.queue_status()["q"]["redelivered"] > 0), hub.queue_status()
    status = hub.queue_status()["q"]
    assert status["acknowledged"] == n, status
    assert status["depth"] == extra, status  # redelivered (from the inbox) or never sent
    assert 0 < status["redelivered"] <= extra, status


def test_a_reader_with_nothing_to_read_is_kept_alive_by_its_heartbeats(
    hub: Hub, endpoint: str
) -> None:
    """The data socket sends nothing while its loop waits: the connection's heartbeats must
    keep it, or the hub would redeliver and forget a healthy consumer."""
    reader = HubClient(endpoint, b"r/0/idle", loop="r", ctx=hub.ctx, heartbeat=0.1)
    writer = HubClient(endpoint, b"w/0/idle", loop="w", ctx=hub.ctx, heartbeat=0.1)
    reader.start()
    writer.start()
    data = b"r/0/idle" + DATA_SUFFIX
    try:
        inbox = reader.subscribe("q", 4)
        assert until(lambda: data in hub._consumers)
        silent_until = time.monotonic() + 6 * 0.5  # six times lost_after
        while time.monotonic() < silent_until:
            assert data in hub._consumers, "an idle reader was declared lost"
            time.sleep(0.05)
        writer.put("q", b"late", b"").result(WAIT)
        assert until(lambda: len(inbox) == 1)
        assert inbox.take() is not None
    finally:
        reader.close(timeout=5)
        writer.close(timeout=5)


def test_a_writer_that_never_yields_still_reads_its_acknowledgements(
    hub: Hub, endpoint: str
) -> None:
    """The engine does not give the event loop a turn for submitted puts, so the channel reads
    the socket itself while puts go on (every IO_EVERY_NS): acknowledgements arrive, and free
    the window, before the writing coroutine ever awaits."""
    writer = HubClient(endpoint, b"w/0/y", loop="w", ctx=hub.ctx, heartbeat=0.1)
    writer.start()
    done: list[BaseException | None] = []

    async def write() -> tuple[int, int]:
        writer.attach()
        puts = 0
        deadline = time.monotonic() + WAIT
        # Synchronous from here to the end of the while loop: no await, no turn of the loop.
        while not done and time.monotonic() < deadline:
            writer.put_callback("q", b"%d" % puts, b"", done.append)
            puts += 1
            pause = time.perf_counter_ns() + 1_000_000  # 1 ms of work between puts
            while time.perf_counter_ns() < pause:
                pass
        return puts, len(done)  # before any await

    try:
        puts, acknowledged = asyncio.run(write())
        assert acknowledged, f"no acknowledgement read during {puts} puts without a turn"
        assert done[0] is None
    finally:
        writer.close(timeout=5)


class _Runs(Settler):
    """Counts what it is told: each call's number of puts and outcome; ``all`` is set once
    ``expected`` puts are settled."""

    __slots__ = ("all", "calls", "expected")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.calls: list[tuple[int, QueueError | None]] = []
        self.all = asyncio.Event()

    def many(self, n: int, error: QueueError | None) -> None:
        self.calls.append((n, error))
        if sum(k for k, _ in self.calls) >= self.expected:
            self.all.set()


def test_puts_that_share_one_settler_are_settled_a_run_at_a_time(hub: Hub, endpoint: str) -> None:
    """A non-blocking writer's puts share one ``done`` (the engine's, see ``_dispatch``): the
    channel tells it of each acknowledged run with one ``many`` call; every put is counted
    once, none with an error."""
    writer = HubClient(endpoint, b"w/0/z", loop="w", ctx=hub.ctx, heartbeat=0.1)
    writer.start()
    n = 256

    async def write() -> _Runs:
        writer.attach()
        runs = _Runs(n)
        put = writer.putter()
        for i in range(n):  # no await in between: later puts gather behind the first
            put("q", b"%d" % i, b"", runs)
        await asyncio.wait_for(runs.all.wait(), WAIT)
        return runs

    try:
        runs = asyncio.run(write())
    finally:
        writer.close(timeout=5)
    assert sum(k for k, _ in runs.calls) == n, runs.calls
    assert all(error is None for _, error in runs.calls), runs.calls
    assert len(runs.calls) < n, "acknowledged runs should settle more than one put a call"
    assert hub.queue_status()["q"]["depth"] == n


@pytest.mark.parametrize(
    "ids",
    [[7], [1, 2, 3], [3, 2, 1], [1, 1, 2], [1, 2, 2, 3], [1, 3, 4], [2, 1, 3], [5, 6, 8, 7]],
)
def test_acknowledgement_runs_of_the_channel_are_the_wire_s(ids: list[int]) -> None:
    """The channel sees ids taken in order without a gap as one run itself (``_runs``); any
    other list gets the wire's runs, so the frame is the same either way."""
    assert _runs(list(ids)) == runs(list(ids))


def test_a_reader_that_goes_idle_still_acknowledges_what_it_took(hub: Hub, endpoint: str) -> None:
    """Acknowledgements wait for a put to ride on, for a quarter of the prefetch, or for a
    moment after the loop's turn (ACK_DELAY_SECONDS): a reader that takes fewer than a quarter
    and then only waits, attached, still has them all acknowledged."""
    writer = HubClient(endpoint, b"w/0/z", loop="w", ctx=hub.ctx, heartbeat=0.1)
    reader = HubClient(endpoint, b"r/0/z", loop="r", ctx=hub.ctx, heartbeat=0.1)
    writer.start()
    reader.start()
    n, prefetch = 3, 64  # acknowledgements go in batches of 16: none of them by count

    async def take_then_wait() -> None:
        reader.attach()
        inbox = reader.subscribe("q", prefetch)
        for _ in range(n):
            while (item := inbox.take()) is None:
                await asyncio.wait_for(inbox.arrival(), WAIT)
            reader.ack("q", item[0])
        acknowledged = asyncio.get_running_loop().run_in_executor(
            None, until, lambda: hub.queue_status()["q"]["acknowledged"] == n
        )
        assert await acknowledged, hub.queue_status()["q"]  # while attached and idle

    try:
        for i in range(n):
            writer.put("q", b"%d" % i, b"").result(WAIT)
        asyncio.run(take_then_wait())
    finally:
        reader.close(timeout=5)
        writer.close(timeout=5)
