"""The queue transport alone, for a ceiling row in ``queue_throughput.py``: a hub and two hub
clients driven by bare coroutines (no loop engine, no nodes), so the table shows how much of a
loop's throughput the transport itself leaves."""

from __future__ import annotations

import asyncio
import threading
import time

import msgpack

from ostinato._messaging._client import HubClient
from ostinato._messaging._hub import Hub
from ostinato._model._spec import QueueSpec

#: Puts awaiting their acknowledgement at once, as the benchmark's non-blocking writer node.
IN_FLIGHT = 256
PREFETCH = 256
TIMEOUT = 120.0


def client_inproc(n: int, size: int, batch: int = 1) -> tuple[float, float]:
    """``n`` messages of ``size`` bytes from a writer coroutine (thread 1) through the hub
    (thread 2) to a reader coroutine (thread 3) that acknowledges each; (first, last) arrival,
    ``perf_counter`` seconds. Payload and meta are packed once, as the writer node packs them.

    ``batch`` > 1: each queue message carries a list of ``batch`` such payloads (what a node
    can write today), ``n // batch`` messages, and the reader decodes each list: the rate of
    payloads when a batch, not a payload, is the unit the transport pays for."""
    items = b"x" * size if batch == 1 else [b"x" * size] * batch
    n //= batch
    hub = Hub([QueueSpec.model_validate({"name": "q", "capacity": n})], {"q": ["r"]})
    writer = HubClient(hub.endpoint, b"w/0/bench", loop="w", ctx=hub.ctx, heartbeat=0.5)
    reader = HubClient(hub.endpoint, b"r/0/bench", loop="r", ctx=hub.ctx, heartbeat=0.5)
    writer.start()
    reader.start()
    payload = msgpack.packb(items)
    meta = msgpack.packb(["w", 1, "0" * 16, time.time()])
    times: dict[str, float] = {}
    subscribed = threading.Event()

    async def read() -> None:
        reader.attach()
        inbox = reader.subscribe("q", PREFETCH)
        ack = reader.acker("q")
        subscribed.set()
        got = 0
        while got < n:
            item = inbox.take()
            if item is None:
                await asyncio.wait_for(inbox.arrival(), TIMEOUT)
                continue
            if not got:
                times["first"] = time.perf_counter()
            got += 1
            if batch > 1:
                msgpack.unpackb(item[1])
            ack(item[0])
        times["last"] = time.perf_counter()

    async def write() -> None:
        writer.attach()
        put = writer.putter()
        loop = asyncio.get_running_loop()
        state = {"in_flight": 0, "left": n}
        everything = loop.create_future()
        slot: list[asyncio.Future[None]] = []

        def done(error: BaseException | None) -> None:
            if error is not None and not everything.done():
                everything.set_exception(error)
            state["in_flight"] -= 1
            state["left"] -= 1
            if slot and not slot[0].done():
                slot[0].set_result(None)
            if not state["left"] and not everything.done():
                everything.set_result(None)

        for _ in range(n):
            while state["in_flight"] >= IN_FLIGHT:
                slot[:] = [loop.create_future()]
                await asyncio.wait_for(slot[0], TIMEOUT)
            state["in_flight"] += 1
            put("q", payload, meta, done)
        await asyncio.wait_for(everything, TIMEOUT)

    failed: list[BaseException] = []

    def reading() -> None:
        try:
            asyncio.run(read())
        except BaseException as exc:  # re-raised in the benchmark's thread
            failed.append(exc)
            subscribed.set()

    thread = threading.Thread(target=reading, name="bench-reader")
    thread.start()
    try:
        if not subscribed.wait(TIMEOUT):
            raise TimeoutError("the reader did not subscribe")
        asyncio.run(write())
        thread.join(TIMEOUT)
        if failed:
            raise failed[0]
        if thread.is_alive() or "last" not in times:
            raise TimeoutError(f"the reader did not get {n} messages in time")
    finally:
        writer.close(timeout=5)
        reader.close(timeout=5)
        hub.close()
    return times["first"], times["last"]
