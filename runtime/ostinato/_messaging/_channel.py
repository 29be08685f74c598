"""A loop replica's data socket to the hub, owned by the loop's own event loop: a message goes
loop → hub → loop, two thread hand-offs instead of four."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from asyncio import events
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from itertools import islice, repeat
from operator import itemgetter, lt
from time import perf_counter_ns
from typing import Any

import zmq

from .._model._ports import Done, QueueError, Settler
from ._local import LocalLink
from ._wire import (
    BATCH_BYTES,
    FROM_HUB,
    Kind,
    WireError,
    batches,
    decode,
    encode,
    envelope,
    parse,
    runs,
    shared,
)

__all__ = [
    "DATA_SUFFIX",
    "Countdown",
    "DataChannel",
    "Delivery",
    "Done",
    "Inbox",
    "Pending",
    "QueueError",
    "Settled",
    "settle",
]

log = logging.getLogger("ostinato.client")

#: The data socket's identity is the connection's identity plus this: the hub keeps a data
#: peer alive with its connection's heartbeats.
DATA_SUFFIX = b"#data"
#: Puts sent to the hub and not yet acknowledged, per queue, before later ones wait here.
WINDOW = 1024
#: While puts of a queue are in flight, later ones wait until that many have gathered or the
#: hub has acknowledged them all: the round trip clocks the batches (Nagle's rule), so a
#: writer alone is never held back, and a fast one sends a frame per batch, not per put.
HOLD = 64
# ZeroMQ constants as ints: pyzmq's flag enums cost a microsecond an operation.
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)
#: A loop that puts without giving its event loop a turn reads the socket itself this often
#: (nanoseconds): acknowledgements free its window and its ``maxInFlight`` slots.
IO_EVERY_NS = 200_000
#: A link's puts (``_local``) are acknowledged as they are sent, so no acknowledgement clocks
#: their batches: a put waits instead when another left less than this long ago (ns) and the
#: event loop has had no turn since, until HOLD have gathered, the loop's next turn, or a put
#: this long after the last send. A put alone still leaves at once.
LINK_HOLD_NS = 100_000
#: An event loop's acknowledgements leave with its next put, when ``ack_every`` have
#: gathered, or this long (seconds) after the loop's turn that found them waiting: one frame
#: and one wake-up of the hub fewer per message for a reader that writes or reads on. Credit
#: never waits for it (``ack_every`` is a quarter of the prefetch).
ACK_DELAY_SECONDS = 0.002
#: Frames read from the socket in one go before the event loop gets a turn.
READ_BURST = 256


#: A message delivered to a reader: its id, payload, meta and whether it is redelivered.
Delivery = tuple[int, bytes, bytes, bool]

#: What a put waits on: a thread future, or a callback on an event loop (with the loop).
Pending = Future[None] | tuple[asyncio.AbstractEventLoop, Done]


def _resolve(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(True)


def _settle_one(done: Done, error: QueueError | None, n: int = 1) -> None:
    try:
        if n == 1:
            done(error)
        elif isinstance(done, Settler):
            done.many(n, error)
        else:
            for _ in range(n):
                done(error)
    except Exception:
        log.exception("a put's completion callback failed")


def _settle_batch(batch: list[tuple[Done, QueueError | None, int]]) -> None:
    for done, error, n in batch:
        _settle_one(done, error, n)


class Countdown(Settler):
    """One ``done`` for a list of puts (a writer's ``split``): called once every put is
    settled, with the first refusal if any."""

    __slots__ = ("done", "error", "left")

    def __init__(self, left: int, done: Done) -> None:
        self.left = left
        self.done = done
        self.error: QueueError | None = None

    def many(self, n: int, error: QueueError | None) -> None:
        """``n`` of the puts settled at once (a run the hub acknowledged)."""
        if error is not None and self.error is None:
            self.error = error
        self.left -= n
        if self.left == 0:
            self.done(self.error)


#: Puts settled: what each waits on, the outcome, and how many puts of a run share both.
Settled = list[tuple[Pending, QueueError | None, int]]


def settle(settled: Settled) -> None:
    """Tell puts their outcome: thread futures and the running event loop's callbacks (the
    data socket's owner's) at once, other loops' callbacks with one ``call_soon_threadsafe``
    per loop."""
    running = events._get_running_loop()
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Done, QueueError | None, int]]] = {}
    for pending, error, n in settled:
        if isinstance(pending, tuple):
            if pending[0] is running:
                if n == 1:  # _settle_one's common case, without its call
                    try:
                        pending[1](error)
                    except Exception:
                        log.exception("a put's completion callback failed")
                else:
                    _settle_one(pending[1], error, n)
            else:
                by_loop.setdefault(pending[0], []).append((pending[1], error, n))
        elif not pending.done():
            if error is None:
                pending.set_result(None)
            else:
                pending.set_exception(error)
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that event loop has closed
            loop.call_soon_threadsafe(_settle_batch, batch)


_SEQ, _PAYLOAD, _META, _PAYLOAD_META = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(1, 2)


def _shared(metas: list[bytes]) -> tuple[list[bytes], list[int] | None]:
    """``shared``, its case of a meta object each (one message an iteration) seen in C."""
    if len(metas) > 1 and len(set(map(id, metas))) == len(metas):
        return metas, None
    return shared(metas)


def _runs(ids: list[int]) -> list[list[int]]:
    """``runs``, its common case seen in C: ids acknowledged in order without a gap (a reader
    that takes its messages one after another), one run."""
    if (
        len(ids) > 1
        and ids[-1] - ids[0] == len(ids) - 1
        and all(map(lt, ids, islice(ids, 1, None)))
    ):
        return [[ids[0], ids[-1]]]
    return runs(ids)


def _consecutive(
    items: list[tuple[int, bytes, bytes]],
) -> Iterator[list[tuple[int, bytes, bytes]]]:
    """Puts in runs of consecutive sequence numbers (one run, unless puts came back after a
    hub restart with gaps among them)."""
    if items[-1][0] - items[0][0] == len(items) - 1:  # numbered in order, no gap: one run
        yield items
        return
    start = 0
    for i in range(1, len(items)):
        if items[i][0] != items[i - 1][0] + 1:
            yield items[start:i]
            start = i
    yield items[start:] if start else items


def _deliveries(msg: dict[str, Any]) -> list[Delivery]:
    """A msgs frame as rows (id, payload, meta, redelivered), zipped in C (the meta one bytes
    object per distinct meta, so a reader decodes it once). The lists' lengths agree: the
    frame was checked (``parse``), or encoded by the hub of this process."""
    ids = msg["ids"]
    payloads = msg["payloads"]
    metas = msg["metas"]
    if len(ids) == 1:  # the lone message
        return [(ids[0], payloads[0], metas[0], "redelivered" in msg)]
    index = msg.get("meta")
    if index is None and len(metas) > 1:  # a meta each
        rows = list(zip(ids, payloads, metas, repeat(False)))
    elif index is None:
        rows = list(zip(ids, payloads, repeat(metas[0]), repeat(False)))
    else:
        rows = list(zip(ids, payloads, map(metas.__getitem__, index), repeat(False)))
    again = msg.get("redelivered")
    if again:
        for position in again:
            rows[position] = (*rows[position][:3], True)
    return rows


def _same(msg: dict[str, Any]) -> dict[str, Any]:
    return msg


class Inbox:
    """Messages delivered to one reader, waiting for the loop to take them."""

    def __init__(self, client: Any, queue: str, prefetch: int) -> None:
        self.client = client
        self.queue = queue
        self.prefetch = prefetch
        #: Acknowledgements are sent once this many have gathered (or at the next turn):
        #: a quarter of the prefetch, so the hub's credit never runs dry.
        self.ack_every = max(prefetch // 4, 1)
        self._items: deque[Delivery] = deque()
        self._lock = threading.Lock()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]] | None = None
        self.error: str | None = None
        #: Between a release and the hub's 'released': deliveries still in transit are dropped.
        self.releasing = False

    def _push(self, items: list[Delivery]) -> None:  # the data socket's owner
        if self.releasing:  # the hub took these back when this reader paused
            return
        with self._lock:
            self._items.extend(items)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, fut = waiter
            if loop is events._get_running_loop():
                _resolve(fut)
            else:
                with contextlib.suppress(RuntimeError):  # that event loop has closed
                    loop.call_soon_threadsafe(_resolve, fut)

    def _fail(self, error: str) -> None:
        self.error = error
        self._push([])

    def drain(self) -> list[Delivery]:
        """Everything waiting here, taken at once."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def take(self) -> Delivery | None:
        """The next message ``(id, payload, meta, redelivered)``, or None when none is here."""
        # Without the lock: only the loop takes, a push only appends, and a deque's popleft
        # is atomic; a drain by another thread in between (a release) leaves it empty.
        items = self._items
        if items:
            try:
                return items.popleft()
            except IndexError:
                return None
        return None

    def take_many(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` messages, in order (none when none is here)."""
        with self._lock:
            items = self._items
            if len(items) <= limit:
                out = list(items)
                items.clear()
                return out
            popleft = items.popleft
            return [popleft() for _ in range(limit)]

    def arrival(self) -> asyncio.Future[bool]:
        """A future resolved (True) when a message arrives; check ``take()`` first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            if self._items or self.error:
                fut.set_result(True)
            else:
                self._waiter = (loop, fut)
        return fut

    def __len__(self) -> int:
        return len(self._items)


class DataChannel:
    """The queue traffic of one loop replica: a DEALER of its own, used by one thread at a
    time, its owner: the connection's I/O thread until the loop's event loop attaches it.

    Puts wait in a per-queue window and leave in batches, one frame per batch (one ZeroMQ
    call per batch: each call lets go of the GIL, which in a busy process costs a thread
    switch; separate frames per payload measured 2-4x slower); acknowledgements of deliveries
    are sent in batches too, when ``ack_every`` have gathered, with the loop's next puts, or
    ``ACK_DELAY_SECONDS`` after the event loop's turn found them waiting (an I/O thread owner:
    after its round), and always before a release and a goodbye. The owner calls ``flush``
    and ``receive``; when an event loop owns the channel it does so by itself (``attach``).
    """

    def __init__(
        self, sock: zmq.Socket[Any] | LocalLink, loop: str, *, trusted: bool = False
    ) -> None:
        self.sock = sock
        self.loop = loop
        #: The hub is in this process (``inproc://``): its frames are this process's own
        #: encoding of checked data, so they are decoded without a second check; a link
        #: carries the messages themselves, no frame (``_local``).
        self._linked = isinstance(sock, LocalLink)
        self._parse: Callable[[Any], dict[str, Any]] = (
            _same if self._linked else decode if trusted else partial(parse, accept=FROM_HUB)
        )
        self._encode: Callable[..., Any] = envelope if self._linked else encode
        #: The event loop that owns the socket, or None while the I/O thread does.
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, deque[tuple[int, bytes, bytes]]] = {}
        self._unacked: dict[str, dict[int, tuple[bytes, bytes]]] = {}
        #: What each put waits on, per queue and sequence number.
        self._futures: dict[str, dict[int, Pending]] = {}
        #: The last sequence number of each queue's puts: a run of puts is numbered without
        #: gaps, so its first number and its length name it, and a run [lo, hi] acknowledges it.
        self._seqs: dict[str, int] = {}
        self._acks: dict[str, list[int]] = {}
        self.inboxes: dict[str, Inbox] = {}
        self._releases: dict[str, list[Callable[[], None]]] = {}
        self._scheduled = False
        self._ack_timer: asyncio.TimerHandle | None = None
        self._dirty = False
        #: Sent since input was last looked for: a send may have taken the FD's edge.
        self._unread = False
        self._io_ns = 0  # when the socket was last read (perf_counter_ns)
        self._put_ns = 0  # when puts last left on a link since the loop's last turn, or 0
        self.closed = False
        #: This connection's run of sequence numbers (puts' epoch): a hub that sees another
        #: epoch from the same identity knows a new writer, not a gap.
        self.epoch = int.from_bytes(os.urandom(4), "little")

    # -- the owner's operations ----------------------------------------------------------------

    def put(self, queue: str, payload: bytes, meta: bytes, pending: Pending) -> None:
        """A put, numbered here, by the socket's owner, so that numbers and the order of the
        window's queue agree (a hub takes a writer's puts in that order, see ``rewind``)."""
        seq = self._seqs[queue] = self._seqs.get(queue, 0) + 1
        waiting = self._waiting.get(queue)
        if waiting is None:
            waiting = self._waiting[queue] = deque()
        futures = self._futures.get(queue)
        if futures is None:
            futures = self._futures[queue] = {}
        futures[seq] = pending
        waiting.append((seq, payload, meta))
        if self.event_loop is None:
            self._wake()  # the I/O thread sends it after its round
            return
        self._put_done(queue, waiting)

    def put_many(self, queue: str, payloads: list[bytes], meta: bytes, pending: Pending) -> None:
        """Puts of the same meta, each its own message (a writer's ``split``), settled with
        one ``pending`` each (a :class:`Countdown` makes them one). The owner event loop's."""
        waiting = self._waiting.get(queue)
        if waiting is None:
            waiting = self._waiting[queue] = deque()
        futures = self._futures.get(queue)
        if futures is None:
            futures = self._futures[queue] = {}
        seq = self._seqs.get(queue, 0)
        for payload in payloads:
            seq += 1
            futures[seq] = pending
            waiting.append((seq, payload, meta))
        self._seqs[queue] = seq
        if self.event_loop is None:
            self._wake()
            return
        self._put_done(queue, waiting)

    def _put_done(self, queue: str, waiting: deque[tuple[int, bytes, bytes]]) -> None:
        """After puts on the owner event loop: send now or hold (see HOLD), look for input."""
        if self._linked:
            now = perf_counter_ns()
            send = len(waiting) >= HOLD or now - self._put_ns >= LINK_HOLD_NS
            if send:
                self._put_ns = now
        else:
            send = not self._unacked.get(queue) or len(waiting) >= HOLD
        if send:
            # Nothing in flight (no acknowledgement will clock a batch), or a batch is full:
            # send now rather than at the loop's next turn, with the acknowledgements this
            # loop has gathered (behind the put: the put is what a reader waits for).
            self._send_puts(queue, waiting)
            self._send_all_acks()
        if self._unread or perf_counter_ns() - self._io_ns >= IO_EVERY_NS:
            # A send may have taken the socket's edge, and a loop busy putting may not give
            # its event loop a turn for a while (the engine does not yield for submitted
            # calls): look for input here, not at the next turn (one turn less a put).
            self._readable()
        if waiting and not self._scheduled:
            self._wake()

    def ack(self, queue: str, msg_id: int) -> None:
        acks = self._acks.get(queue)
        if acks is None:
            acks = self._acks[queue] = []
        acks.append(msg_id)
        inbox = self.inboxes.get(queue)
        if inbox is None or len(acks) >= inbox.ack_every:
            self._send_acks(queue)
        # Else with the loop's next put, or a moment after its next turn (ACK_DELAY_SECONDS):
        # not on the critical path, and no frame of their own while the loop writes on.
        if not self._scheduled:
            self._wake()

    def ack_many(self, queue: str, msg_ids: list[int]) -> None:
        """:meth:`ack` of several messages (a batch), in one go."""
        acks = self._acks.get(queue)
        if acks is None:
            acks = self._acks[queue] = []
        acks.extend(msg_ids)
        inbox = self.inboxes.get(queue)
        if inbox is None or len(acks) >= inbox.ack_every:
            self._send_acks(queue)
        self._wake()

    def give_back(self, queue: str, msg_ids: list[int]) -> None:
        """Hand these delivered messages back unacknowledged: the hub redelivers them."""
        if msg_ids:
            self.sock.send(self._encode(Kind.GIVE_BACK, q=queue, loop=self.loop, ids=msg_ids))
            self._sent()
            self._wake()

    def subscribe(self, inbox: Inbox) -> None:
        self.inboxes[inbox.queue] = inbox
        self._subscribe(inbox)

    def renew(self, queue: str) -> None:
        inbox = self.inboxes.get(queue)
        if inbox is not None:
            self._subscribe(inbox)

    def release(self, queue: str, done: Callable[[], None]) -> None:
        """Give back what was delivered and not taken; ``done`` once the hub has it back."""
        # Acknowledgements first: at the hub, what is still in flight after them is exactly
        # what this reader has not taken, and the hub takes all of it back.
        self._send_acks(queue)
        self._wake()
        inbox = self.inboxes.get(queue)
        if inbox is None:
            done()
            return
        inbox.releasing = True  # until the hub says 'released': deliveries in transit
        inbox.drain()  # are the hub's again, dropped here
        self._releases.setdefault(queue, []).append(done)
        self.sock.send(self._encode(Kind.RELEASE, q=queue, loop=self.loop))
        self._sent()

    def rewind(self, queue: str, seq: int) -> None:
        """The hub asks for the puts of ``queue`` from ``seq`` on again (it has not got them,
        and takes none out of order): back into the window's queue, in order, before any
        later ones, and sent again."""
        log.info("the hub asks for the puts of %r from %d again", queue, seq)
        unacked = self._unacked.get(queue)
        if not unacked:
            return
        again = sorted(s for s in unacked if s >= seq)
        if not again:
            return
        waiting = self._waiting.setdefault(queue, deque())
        waiting.extendleft(reversed([(s, *unacked.pop(s)) for s in again]))
        self._send_puts(queue, waiting, hold=False)
        self._wake()

    def hub_restarted(self) -> None:
        """A new hub: what the old one had not acknowledged is sent again, in order."""
        for queue, unacked in self._unacked.items():
            again = [(seq, payload, meta) for seq, (payload, meta) in sorted(unacked.items())]
            unacked.clear()
            self._waiting.setdefault(queue, deque()).extendleft(reversed(again))
        for inbox in self.inboxes.values():
            self._subscribe(inbox)
        self._wake()

    def flush(self) -> None:
        """Send gathered acknowledgements and whatever puts the window lets out."""
        self._send_all_acks()
        self._flush_puts()

    def _flush_puts(self) -> None:
        self._dirty = False
        for queue, waiting in self._waiting.items():
            if waiting:
                self._send_puts(queue, waiting)

    def goodbye(self) -> None:
        """The last frames: held puts (the window allowing), pending acknowledgements, then
        'bye' (the hub redelivers what this loop had not acknowledged)."""
        if self.closed:
            return
        self.closed = True
        for queue, waiting in self._waiting.items():
            if waiting:
                self._send_puts(queue, waiting, hold=False)
        for queue in [q for q, ids in self._acks.items() if ids]:
            self._send_acks(queue)
        self.sock.send(self._encode(Kind.BYE))

    def fail_all(self, error: QueueError) -> None:
        """The connection is closing: every put still waiting for the hub fails."""
        pending = [p for futures in self._futures.values() for p in futures.values()]
        for futures in self._futures.values():
            futures.clear()
        settle([(p, error, 1) for p in pending])

    # -- sending -------------------------------------------------------------------------------

    def _subscribe(self, inbox: Inbox) -> None:
        credit = max(inbox.prefetch - len(inbox), 0)
        self.sock.send(self._encode(Kind.SUB, q=inbox.queue, loop=self.loop, credit=credit))
        self._sent()
        self._wake()

    def _send_all_acks(self) -> None:
        for queue, ids in self._acks.items():
            if ids:
                self._send_acks(queue)

    def _send_acks(self, queue: str) -> None:
        ids = self._acks.get(queue)
        if ids:
            self._acks[queue] = []
            self.sock.send(self._encode(Kind.ACK, q=queue, loop=self.loop, runs=_runs(ids)))
            self._sent()

    def _send_puts(
        self, queue: str, waiting: deque[tuple[int, bytes, bytes]], hold: bool = True
    ) -> None:
        unacked = self._unacked.get(queue)
        if unacked is None:
            unacked = self._unacked[queue] = {}
        if hold and unacked and len(waiting) < HOLD:
            return  # the acknowledgement of what is in flight sends these (see HOLD)
        n = min(WINDOW - len(unacked), len(waiting))
        if n <= 0:
            return
        if n == 1:  # the lone message: its frame without the batch's bookkeeping
            seq, payload, meta = waiting.popleft()
            unacked[seq] = (payload, meta)
            since = next(iter(unacked))
            self.sock.send(
                self._encode(
                    Kind.PUTS,
                    q=queue,
                    seq=seq,
                    payloads=[payload],
                    metas=[meta],
                    since=since,
                    epoch=self.epoch,
                )
            )
            self._sent()
            return
        if n == len(waiting):
            items = list(waiting)
            waiting.clear()
        else:
            popleft = waiting.popleft
            items = [popleft() for _ in range(n)]
        # The walks over the puts in C (map, zip, itemgetter): they run once per put.
        unacked.update(zip(map(_SEQ, items), map(_PAYLOAD_META, items), strict=True))
        send = self.sock.send
        since = next(iter(unacked))  # the oldest not acknowledged (sent in order)
        payloads = list(map(_PAYLOAD, items))
        metas = list(map(_META, items))
        first = items[0][0]
        if (
            items[-1][0] - first == n - 1  # numbered without a gap: one run (_consecutive)
            and sum(map(len, payloads)) + sum(map(len, metas)) <= BATCH_BYTES  # one frame
        ):
            distinct, index = _shared(metas)
            fields: dict[str, Any] = {"meta": index} if index is not None else {}
            send(
                self._encode(
                    Kind.PUTS,
                    q=queue,
                    seq=first,
                    payloads=payloads,
                    metas=distinct,
                    since=min(since, first),
                    epoch=self.epoch,
                    **fields,
                )
            )
            self._sent()
            return
        for batch in batches(items):
            for run in _consecutive(batch):  # a frame's sequence numbers follow one another
                run_metas, index = shared([item[2] for item in run])
                fields = {"meta": index} if index is not None else {}
                send(
                    self._encode(
                        Kind.PUTS,
                        q=queue,
                        seq=run[0][0],
                        payloads=[item[1] for item in run],
                        metas=run_metas,
                        since=min(since, run[0][0]),
                        epoch=self.epoch,
                        **fields,
                    )
                )
        self._sent()

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, limit: int = READ_BURST, *, signalled: bool = False) -> int:
        """Handle what has arrived, at most ``limit`` messages; returns how many.
        ``signalled``: the socket's descriptor has just fired, so the first read needs no
        asking (a read that finds the socket's pipe asleep wakes it, as EVENTS would)."""
        sock = self.sock
        recv = sock.recv
        events: Callable[[int], int] = sock.getsockopt  # type: ignore[assignment]  # EVENTS: int
        self._unread = False
        self._io_ns = perf_counter_ns()
        n = 0
        # EVENTS first (each is a getpid and a poll system call in libzmq): a recv that
        # finds nothing raises zmq.Again, which costs more.
        parse_ = self._parse
        while n < limit and (signalled or events(_EVENTS) & _POLLIN):
            signalled = False
            try:
                frame = recv(_NOBLOCK)
            except zmq.Again:
                break
            n += 1
            try:
                self._handle(parse_(frame))
            except WireError as exc:
                log.warning("dropped malformed frame from the hub: %s", exc)
        return n

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == Kind.MSGS:
            inbox = self.inboxes.get(msg["q"])
            if inbox is not None:
                inbox._push(_deliveries(msg))
        elif kind == Kind.ACKS:
            queue = msg["q"]
            settled: Settled = []
            futures = self._futures.get(queue)
            if futures is None:
                futures = {}
            unacked = self._unacked.get(queue)
            if unacked is None:
                unacked = {}
            pop, take = unacked.pop, futures.pop
            append = settled.append
            for lo, hi in msg["runs"]:
                # A run longer than what is in flight is walked through what is in flight.
                seqs = (
                    range(lo, hi + 1)
                    if hi - lo < len(unacked)
                    else [s for s in list(unacked) if lo <= s <= hi]
                )
                # The puts of a split list share one pending, and consecutive puts may share
                # one callback (a Settler) on one loop: settled once per run of it.
                last: Pending | None = None
                last_loop: object = None
                last_done: object = None
                n = 0
                for seq in seqs:
                    pop(seq, None)
                    pending = take(seq, None)
                    if pending is None:
                        continue
                    if pending is last or (
                        type(pending) is tuple
                        and pending[1] is last_done
                        and pending[0] is last_loop
                    ):
                        n += 1
                        continue
                    if last is not None:
                        append((last, None, n))
                    last, n = pending, 1
                    if type(pending) is tuple:
                        last_loop, last_done = pending
                    else:
                        last_loop = last_done = None
                if last is not None:
                    append((last, None, n))
            for seq, error in msg.get("refused", ()):
                unacked.pop(seq, None)
                pending = futures.pop(seq, None)
                if pending is not None:
                    settled.append((pending, QueueError(error), 1))
            settle(settled)  # this loop's callbacks at once: no second pass
            self._wake()  # the window has room again
        elif kind == Kind.ERROR:
            inbox = self.inboxes.get(msg["q"])
            if inbox is not None:
                inbox._fail(msg["error"])
            log.error("hub: %s", msg["error"])
        elif kind == Kind.RELEASED:
            inbox = self.inboxes.get(msg["q"])
            if inbox is not None:
                inbox.releasing = False
            for done in self._releases.pop(msg["q"], []):
                done()
        elif kind == Kind.REWIND:
            self.rewind(msg["q"], msg["seq"])
        elif kind == Kind.RESUBSCRIBE:  # the hub had given us up for lost: we are back
            log.warning("the hub had declared this loop lost: subscribing again")
            for inbox in self.inboxes.values():
                self._subscribe(inbox)
        else:
            log.debug("ignored %r on the data connection", kind)

    # -- the event loop as owner ---------------------------------------------------------------

    def _sent(self) -> None:
        """A send may have taken the edge of the socket's FD: input must be looked for (by
        the sender at once, or by the tick that ``_wake`` schedules)."""
        self._unread = True

    def _wake(self) -> None:
        """Something is waiting to be sent, or was sent: an event loop flushes at its next
        turn (so puts and acks of one turn leave together) and then, if it sent anything,
        looks for input, because a send may have taken the edge of the socket's FD (looking
        is a system call: not done on turns that sent nothing). The I/O thread polls and
        flushes after every round anyway."""
        self._dirty = True
        loop = self.event_loop
        if loop is not None and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._tick)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """``loop`` owns the socket from now on (called on its thread)."""
        self.event_loop = loop
        if isinstance(self.sock, LocalLink):
            self.sock.attached = True
        loop.add_reader(self.sock.FD, self._signalled)
        self._readable()
        if self._dirty:
            self._wake()

    def detach(self) -> None:
        """Stop watching the socket (on the owner's thread); the channel is nobody's after."""
        loop, self.event_loop = self.event_loop, None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if isinstance(self.sock, LocalLink):
            self.sock.attached = False
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):  # the loop may be closing
                loop.remove_reader(self.sock.FD)

    def _tick(self) -> None:
        if self.closed or self.event_loop is None:
            self._scheduled = False
            return
        self._flush_puts()
        self._put_ns = 0
        self._scheduled = False  # the sends above need no other turn: input is read now
        if self._ack_timer is None and any(self._acks.values()):
            self._ack_timer = self.event_loop.call_later(ACK_DELAY_SECONDS, self._acks_due)
        if self._unread:
            self._readable()  # a send may have taken the socket's edge: look for input now

    def _acks_due(self) -> None:
        self._ack_timer = None
        if self.closed or self.event_loop is None:
            return
        self._send_all_acks()
        if self._unread:
            self._readable()

    def _readable(self, signalled: bool = False) -> None:
        """The socket's FD is edge-triggered: read until ZeroMQ says nothing is left (EVENTS,
        which ``receive`` asks before each read, also re-arms the FD)."""
        if self.closed or self.event_loop is None:
            return
        if self.receive(signalled=signalled) >= READ_BURST:  # let the loop breathe, go on
            self.event_loop.call_soon(self._readable)

    def _signalled(self) -> None:
        """The socket's descriptor fired (the event loop's reader callback)."""
        self._readable(True)

    def wait_released(self, queue: str, timeout: float) -> bool:
        """On the owner event loop's thread, inside a synchronous call (a pause hook): release
        ``queue`` and serve the socket until the hub confirms, at most ``timeout`` seconds."""
        done = threading.Event()
        self.release(queue, done.set)
        deadline = asyncio.get_running_loop().time() + timeout
        loop = asyncio.get_running_loop()
        while not done.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return False
            if self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                self.receive()
        return True
