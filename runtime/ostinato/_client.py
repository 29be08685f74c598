"""A loop's connection to the hub: queue puts and deliveries, heartbeats, control commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import zmq

from ._mailbox import Mailbox
from ._wire import BATCH_BYTES, WireError, decode, encode

__all__ = ["HubClient", "Inbox", "QueueError"]

log = logging.getLogger("ostinato.client")

#: Puts sent to the hub and not yet acknowledged, per queue, before later ones wait here.
WINDOW = 1024


class QueueError(RuntimeError):
    """The hub refused a message (too large, unknown queue) or a subscription."""


class Inbox:
    """Messages delivered to one reader, waiting for the loop to take them."""

    def __init__(self, client: HubClient, queue: str, prefetch: int) -> None:
        self.client = client
        self.queue = queue
        self.prefetch = prefetch
        self._items: deque[list[Any]] = deque()
        self._lock = threading.Lock()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]] | None = None
        self.error: str | None = None
        #: Between a release and the hub's 'released': deliveries still in transit are dropped.
        self.releasing = False

    def _push(self, items: list[list[Any]]) -> None:  # I/O thread
        if self.releasing:  # the hub took these back when this reader paused
            return
        with self._lock:
            self._items.extend(items)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, fut = waiter
            loop.call_soon_threadsafe(_resolve, fut)

    def _fail(self, error: str) -> None:  # I/O thread
        self.error = error
        self._push([])

    def drain(self) -> list[list[Any]]:
        """Everything waiting here, taken at once."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def take(self) -> list[Any] | None:
        """The next message ``[id, payload, meta, redelivered]``, or None when none is here."""
        with self._lock:
            return self._items.popleft() if self._items else None

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


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


#: What a put waits on: a thread future, or an event loop's future (with its loop).
Pending = Future[None] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _settle_all(settled: list[tuple[Pending, QueueError | None]]) -> None:
    """Resolve puts' futures (I/O thread): thread futures at once, event-loop futures with one
    call_soon_threadsafe per loop, which is one self-pipe write for a whole frame of acks."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
    for pending, error in settled:
        if isinstance(pending, tuple):
            by_loop.setdefault(pending[0], []).append((pending[1], error))
        elif not pending.done():
            if error is None:
                pending.set_result(None)
            else:
                pending.set_exception(error)
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that event loop has closed
            loop.call_soon_threadsafe(_settle_batch, batch)


def _settle_batch(batch: list[tuple[asyncio.Future[None], Any]]) -> None:
    for fut, error in batch:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


class HubClient:
    """One loop replica's DEALER socket to the hub, owned by an I/O thread of its own.

    Thread-safe: ``put`` returns a future resolved when the hub has accepted the message
    (for a durable queue: once it is on disk); ``subscribe`` returns an :class:`Inbox` that
    the hub fills against credit; ``ack`` returns credit once an iteration is done with a
    message. When the hub restarts (it answers heartbeats with a new id), unacknowledged puts
    are sent again and subscriptions renewed: delivery is at least once.
    """

    def __init__(
        self,
        endpoint: str,
        identity: bytes,
        *,
        loop: str,
        ctx: zmq.Context[Any] | None = None,
        keys: Any = None,
        heartbeat: float = 1.0,
    ) -> None:
        self.loop = loop
        self.identity = identity
        self.heartbeat = heartbeat
        #: A client on its own (a process loop, a remote loop) owns its context and terminates
        #: it on close, so its last frames (final status, bye) are out before the process ends.
        self._own_ctx = ctx is None
        self.ctx: zmq.Context[Any] = ctx or zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        if keys is not None:
            from ._security import secure_client

            secure_client(self.sock, keys)
        self.sock.connect(endpoint)
        self.mailbox = Mailbox(self.ctx)
        self.on_control: Callable[[dict[str, Any]], None] | None = None
        self.status: Callable[[], dict[str, Any]] | None = None
        self.hub_id: str | None = None
        #: Set once the loop has ended: the last heartbeat then says its status is final.
        self.final = False
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._waiting: dict[str, deque[tuple[int, bytes, bytes]]] = {}
        self._unacked: dict[str, dict[int, tuple[bytes, bytes, Pending]]] = {}
        self._futures: dict[tuple[str, int], Pending] = {}
        self._inboxes: dict[str, Inbox] = {}
        self._releases: dict[str, list[Future[None]]] = {}
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- before start: the process loop's handshake --------------------------------------------

    def handshake(self, timeout: float) -> dict[str, Any]:
        """Say hello and wait for the orchestrator's config message (process loops)."""
        self.sock.send(encode("hello", pid=os.getpid(), loop=self.loop))
        deadline_ms = int(timeout * 1000)
        while self.sock.poll(deadline_ms):
            msg = decode(self.sock.recv())
            if msg["t"] == "config":
                return msg
        raise TimeoutError(f"no configuration from the orchestrator within {timeout:g}s")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="ostinato-client", daemon=True)
        self._thread.start()

    # -- API, any thread -----------------------------------------------------------------------

    def put(self, queue: str, payload: bytes, meta: bytes) -> Future[None]:
        """Send a message; the future resolves once the hub has accepted it (any thread)."""
        fut: Future[None] = Future()
        self.mailbox.put("put", queue, self._next_seq(), payload, meta, fut)
        return fut

    def put_async(self, queue: str, payload: bytes, meta: bytes) -> asyncio.Future[None]:
        """As :meth:`put`, for a caller on an event loop: the I/O thread settles all of one
        acknowledgement frame's futures of a loop with one wake-up, not one per message."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.mailbox.put("put", queue, self._next_seq(), payload, meta, (loop, fut))
        return fut

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def subscribe(self, queue: str, prefetch: int) -> Inbox:
        inbox = Inbox(self, queue, prefetch)
        self._inboxes[queue] = inbox
        self.mailbox.put("sub", queue)
        return inbox

    def ack(self, queue: str, msg_id: int) -> None:
        self.mailbox.put("ack", queue, msg_id)

    def release(self, queue: str) -> Future[None]:
        """Give back every message delivered and not taken, and take no more (a paused
        reader): in a work queue other replicas get them instead of waiting for this one to
        resume. Resolved once the hub has them back."""
        fut: Future[None] = Future()
        self.mailbox.put("release", queue, fut)
        return fut

    def renew(self, queue: str) -> None:
        """Take messages again after :meth:`release` (a resumed reader)."""
        self.mailbox.put("sub", queue)

    def send_status(self) -> None:
        """Send the loop's status now (state changes) instead of at the next heartbeat."""
        self.mailbox.put("status")

    def close(self, timeout: float = 5.0) -> None:
        """Say goodbye (the hub gives unacknowledged messages to others) and stop."""
        if self._thread is not None:
            if self._thread.is_alive():
                with contextlib.suppress(zmq.ZMQError):  # the I/O thread is on its way out
                    self.mailbox.put("bye")
                self._thread.join(timeout)
            if self._own_ctx:  # closing is asynchronous: term() waits (LINGER) for the sends
                self.ctx.term()
        else:
            self.sock.close(linger=0)
            self.mailbox.close()

    # -- the I/O thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.mailbox.receiver, zmq.POLLIN)
        timeout_ms = int(self.heartbeat * 1000)
        next_beat = 0.0
        try:
            while True:
                events = dict(poller.poll(timeout_ms))
                if self.sock in events:
                    self._receive()
                bye = False
                if self.mailbox.receiver in events:
                    bye = self._mailbox_round()
                self._send_puts()
                now = time.monotonic()
                if now >= next_beat or bye:
                    next_beat = now + self.heartbeat
                    self._beat()
                if bye:
                    self.sock.send(encode("bye"))
                    return
        except zmq.ContextTerminated:
            log.debug("hub connection of loop %r: context terminated", self.loop)
            return
        except Exception:
            log.exception("hub connection of loop %r failed", self.loop)
            raise
        finally:
            self.sock.close()
            self.mailbox.close()
            closed = QueueError("the hub connection closed")
            _settle_all([(pending, closed) for pending in self._futures.values()])

    def _beat(self) -> None:
        if self.status is not None:
            self.sock.send(encode("status", status=self.status(), final=self.final))
        else:
            self.sock.send(encode("ping"))

    def _mailbox_round(self) -> bool:
        bye = False
        acks: dict[str, list[int]] = {}
        for item in self._mailbox_items():
            kind = item[0]
            if kind == "put":
                _, queue, seq, payload, meta, fut = item
                self._futures[(queue, seq)] = fut
                self._waiting.setdefault(queue, deque()).append((seq, payload, meta))
            elif kind == "ack":
                acks.setdefault(item[1], []).append(item[2])
            elif kind == "sub":
                self._subscribe(self._inboxes[item[1]])
            elif kind == "release":
                # Acknowledgements first: at the hub, what is still in flight after them is
                # exactly what this reader has not taken, and the hub takes all of it back.
                for queue, ids in acks.items():
                    self.sock.send(encode("ack", q=queue, loop=self.loop, ids=ids))
                acks.clear()
                inbox = self._inboxes[item[1]]
                inbox.releasing = True  # until the hub says 'released': deliveries in transit
                inbox.drain()  # are the hub's again, dropped here
                self._releases.setdefault(inbox.queue, []).append(item[2])
                self.sock.send(encode("release", q=inbox.queue, loop=self.loop))
            elif kind == "status":
                self._beat()
            elif kind == "bye":
                bye = True
        for queue, ids in acks.items():
            self.sock.send(encode("ack", q=queue, loop=self.loop, ids=ids))
        return bye

    def _mailbox_items(self) -> list[tuple[Any, ...]]:
        return self.mailbox.take()

    def _subscribe(self, inbox: Inbox) -> None:
        credit = max(inbox.prefetch - len(inbox), 0)
        self.sock.send(encode("sub", q=inbox.queue, loop=self.loop, credit=credit))

    def _send_puts(self) -> None:
        for queue, waiting in self._waiting.items():
            if not waiting:
                continue
            unacked = self._unacked.setdefault(queue, {})
            room = WINDOW - len(unacked)
            if room <= 0:
                continue
            while waiting and room > 0:
                items: list[list[Any]] = []
                size = 0
                while (
                    waiting and room > 0 and (not items or size + len(waiting[0][1]) <= BATCH_BYTES)
                ):
                    seq, payload, meta = waiting.popleft()
                    unacked[seq] = (payload, meta, self._futures[(queue, seq)])
                    items.append([seq, payload, meta])
                    size += len(payload) + len(meta)
                    room -= 1
                self.sock.send(encode("puts", q=queue, items=items))

    def _receive(self) -> None:
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decode(frame)
                self._handle(msg)
            except (WireError, KeyError, TypeError, ValueError) as exc:
                log.warning("dropped malformed frame from the hub: %s", exc)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == "msgs":
            inbox = self._inboxes.get(msg["q"])
            if inbox is not None:
                inbox._push(msg["items"])
        elif kind == "acks":
            settled: list[tuple[Pending, QueueError | None]] = []
            for item in msg["items"]:
                queue, seq = item[0], item[1]
                self._unacked.get(queue, {}).pop(seq, None)
                pending = self._futures.pop((queue, seq), None)
                if pending is not None:
                    settled.append((pending, QueueError(str(item[2])) if len(item) > 2 else None))
            _settle_all(settled)
        elif kind == "pong":
            hub = str(msg["hub"])
            if self.hub_id is not None and hub != self.hub_id:
                self._hub_restarted()
            self.hub_id = hub
        elif kind == "error":
            inbox = self._inboxes.get(msg.get("q", ""))
            if inbox is not None:
                inbox._fail(str(msg["error"]))
            log.error("hub: %s", msg["error"])
        elif kind == "released":
            inbox = self._inboxes.get(msg["q"])
            if inbox is not None:
                inbox.releasing = False
            for fut in self._releases.pop(msg["q"], []):
                if not fut.done():
                    fut.set_result(None)
        elif kind == "resubscribe":  # the hub had given us up for lost: we are back
            log.warning("the hub had declared this loop lost: subscribing again")
            for inbox in self._inboxes.values():
                self._subscribe(inbox)
        elif kind == "control" and self.on_control is not None:
            self.on_control(msg)

    def _hub_restarted(self) -> None:
        """A new hub: what the old one had not acknowledged is sent again, in order."""
        log.warning("the hub restarted: resending unacknowledged messages, renewing subscriptions")
        for queue, unacked in self._unacked.items():
            again = [(seq, payload, meta) for seq, (payload, meta, _fut) in sorted(unacked.items())]
            unacked.clear()
            self._waiting.setdefault(queue, deque()).extendleft(reversed(again))
        for inbox in self._inboxes.values():
            self._subscribe(inbox)
