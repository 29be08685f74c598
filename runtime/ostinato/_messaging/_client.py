"""A loop's connection to the hub: control and heartbeats on an I/O thread; queue data on a
socket of its own (``_channel.DataChannel``) that the loop's event loop drives once attached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from asyncio import events
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

import zmq

from .._model._ports import Done, QueueError
from .._model._spec import DesiredState
from ._channel import DATA_SUFFIX, Countdown, DataChannel, Inbox, Pending
from ._local import hub_at
from ._mailbox import Mailbox
from ._wire import FROM_HUB, Kind, WireError, encode, parse

__all__ = ["HubClient", "Inbox", "QueueError"]

log = logging.getLogger("ostinato.client")

#: How long ``attach`` waits for the I/O thread to hand the data socket over, seconds.
HANDOFF_TIMEOUT = 10.0


class HubClient:
    """One loop replica's connection to the hub: two DEALER sockets.

    The control socket belongs to an I/O thread of its own: the process loop's handshake,
    heartbeats with the loop's status, its desired state (control). The data socket carries the
    queues (:class:`DataChannel`); the I/O thread serves it until the loop's event loop calls
    :meth:`attach`, after which that event loop owns it, so a put or a delivery does not
    cross threads inside the loop's process. Every public method is thread-safe: a call from
    another thread is handed to the owner.

    ``put`` returns a future resolved when the hub has accepted the message (for a durable
    queue: once it is on disk); ``subscribe`` returns an :class:`Inbox` that the hub fills
    against credit; ``ack`` returns credit once an iteration is done with a message. When the
    hub restarts (it answers heartbeats with a new id), unacknowledged puts are sent again and
    subscriptions renewed: delivery is at least once.
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
        self.sock = self._socket(identity, endpoint, keys)
        hub = hub_at(endpoint) if keys is None else None
        self.data = DataChannel(
            # A hub in this process: its link, not a socket (``_local``).
            hub.link(identity + DATA_SUFFIX)
            if hub is not None
            else self._socket(identity + DATA_SUFFIX, endpoint, keys),
            loop,
            trusted=endpoint.startswith("inproc://"),
        )
        #: What the I/O thread polls for the data connection: its socket, or the descriptor
        #: of its link (``zmq.Poller`` names a descriptor's events by the descriptor).
        self._polled: zmq.Socket[Any] | int = (
            self.data.sock if isinstance(self.data.sock, zmq.Socket) else self.data.sock.FD
        )
        self.mailbox = Mailbox()
        #: Called on the I/O thread with the desired state of every control message.
        self.on_control: Callable[[DesiredState], None] | None = None
        self.status: Callable[[], dict[str, Any]] | None = None
        self.hub_id: str | None = None
        #: Set once the loop has ended: the last heartbeat then says its status is final.
        self.final = False
        #: Set while the loop waits for the hub to say its desired state (a restarted remote
        #: loop must not act before it knows it is paused); sent with every status.
        self.awaiting = False
        self._io_owns_data = True
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _socket(self, identity: bytes, endpoint: str, keys: Any) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if keys is not None:
            from ._security import secure_client

            secure_client(sock, keys)
        sock.connect(endpoint)
        return sock

    # -- before start: the process loop's handshake --------------------------------------------

    def handshake(self, timeout: float) -> dict[str, Any]:
        """Say hello and wait for the orchestrator's config message (process loops)."""
        self.sock.send(encode(Kind.HELLO, pid=os.getpid(), loop=self.loop))
        deadline_ms = int(timeout * 1000)
        while self.sock.poll(deadline_ms):
            try:
                msg = parse(self.sock.recv(), FROM_HUB)
            except WireError as exc:
                log.warning("dropped malformed frame from the hub: %s", exc)
                continue
            if msg["t"] == Kind.CONFIG:
                return msg
        raise TimeoutError(f"no configuration from the orchestrator within {timeout:g}s")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="ostinato-client", daemon=True)
        self._thread.start()

    # -- the data socket's owner ---------------------------------------------------------------

    def attach(self) -> None:
        """Let the running event loop own the data socket (called on it; once is enough).

        The loop's queue nodes call this from their first coroutine: from then on puts,
        deliveries and acknowledgements never leave the loop's thread inside this process."""
        loop = asyncio.get_running_loop()
        chan = self.data
        if chan.event_loop is loop or chan.closed:
            return
        if chan.event_loop is not None:
            raise RuntimeError(f"the data connection of loop {self.loop!r} has another owner")
        thread = self._thread
        if thread is not None and thread.is_alive():
            handed = threading.Event()
            self.mailbox.put("handoff", loop, handed)
            if not handed.wait(HANDOFF_TIMEOUT):
                raise RuntimeError("the hub connection's I/O thread did not hand over")
        else:
            self._io_owns_data = False
            chan.event_loop = loop
        chan.attach(loop)

    def _data_call(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the data socket's owner: here, on its event loop, or on the
        I/O thread."""
        loop = self.data.event_loop
        if loop is not None:
            if events._get_running_loop() is loop:
                fn(*args)
            else:
                with contextlib.suppress(RuntimeError):  # that event loop has closed
                    loop.call_soon_threadsafe(fn, *args)
        else:
            with contextlib.suppress(zmq.ZMQError):  # the I/O thread is on its way out
                self.mailbox.put("call", fn, args)

    # -- API, any thread -----------------------------------------------------------------------

    def put(self, queue: str, payload: bytes, meta: bytes) -> Future[None]:
        """Send a message; the future resolves once the hub has accepted it (any thread)."""
        fut: Future[None] = Future()
        self._data_call(self.data.put, queue, payload, meta, fut)
        return fut

    def put_callback(self, queue: str, payload: bytes, meta: bytes, done: Done) -> None:
        """Send a message from an event loop: ``done(None)``, or ``done(error)`` with the hub's
        refusal, is called on that loop once the hub has the message (from the loop that owns
        the data socket, the put is batched with the others of its turn)."""
        pending: Pending = (asyncio.get_running_loop(), done)
        self._data_call(self.data.put, queue, payload, meta, pending)

    def putter(self) -> Callable[[str, bytes, bytes, Done], None]:
        """:meth:`put_callback` for the event loop that owns the data socket (``attach``),
        without its checks: for a writer that puts on every iteration. Call it on that loop."""
        loop, chan = asyncio.get_running_loop(), self.data
        if chan.event_loop is not loop:  # not attached (a closed connection): the long way
            return self.put_callback

        def put(queue: str, payload: bytes, meta: bytes, done: Done) -> None:
            chan.put(queue, payload, meta, (loop, done))

        return put

    def list_putter(self) -> Callable[[str, list[bytes], bytes, Done], None]:
        """Puts a list of payloads of one meta as as many messages (a writer's ``split``), with
        one ``done`` for all of them (the first refusal, if any). Call it on the event loop
        that owns the data socket (``attach``), as :meth:`putter`."""
        loop, chan = asyncio.get_running_loop(), self.data
        attached = chan.event_loop is loop

        def put_list(queue: str, payloads: list[bytes], meta: bytes, done: Done) -> None:
            if not payloads:
                done(None)
                return
            countdown = Countdown(len(payloads), done)
            if attached:
                chan.put_many(queue, payloads, meta, (loop, countdown))
            else:  # not attached (a closed connection): the long way
                for payload in payloads:
                    self.put_callback(queue, payload, meta, countdown)

        return put_list

    def acker(self, queue: str) -> Callable[[int], None]:
        """:meth:`ack` of ``queue`` for the event loop that owns the data socket, without its
        checks: for a reader that acknowledges on every iteration."""
        if self.data.event_loop is not asyncio.get_running_loop():
            return partial(self.ack, queue)  # not attached (a closed connection): the long way
        return partial(self.data.ack, queue)

    def subscribe(self, queue: str, prefetch: int) -> Inbox:
        inbox = Inbox(self, queue, prefetch)
        self._data_call(self.data.subscribe, inbox)
        return inbox

    def ack(self, queue: str, msg_id: int) -> None:
        self._data_call(self.data.ack, queue, msg_id)

    def ack_many(self, queue: str, msg_ids: list[int]) -> None:
        """:meth:`ack` of several messages (a batch's), in one go (any thread)."""
        self._data_call(self.data.ack_many, queue, list(msg_ids))

    def give_back(self, queue: str, msg_ids: list[int]) -> None:
        """Hand delivered messages back unacknowledged, for redelivery (any thread)."""
        self._data_call(self.data.give_back, queue, list(msg_ids))

    def release(self, queue: str) -> Future[None]:
        """Give back every message delivered and not taken, and take no more (a paused
        reader): in a work queue other replicas get them instead of waiting for this one to
        resume. Resolved once the hub has them back. Not from the owner event loop's thread
        (use :meth:`release_wait` there)."""
        fut: Future[None] = Future()

        def done() -> None:
            if not fut.done():
                fut.set_result(None)

        self._data_call(self.data.release, queue, done)
        return fut

    def release_wait(self, queue: str, timeout: float) -> bool:
        """:meth:`release` and wait for the hub, from any thread; False after ``timeout``."""
        loop = self.data.event_loop
        if loop is not None and events._get_running_loop() is loop:
            return self.data.wait_released(queue, timeout)
        try:
            self.release(queue).result(timeout)
        except TimeoutError:
            return False
        return True

    def renew(self, queue: str) -> None:
        """Take messages again after :meth:`release` (a resumed reader)."""
        self._data_call(self.data.renew, queue)

    def send_status(self) -> None:
        """Send the loop's status now (state changes) instead of at the next heartbeat."""
        with contextlib.suppress(zmq.ZMQError):
            self.mailbox.put("status")

    def close(self, timeout: float = 5.0) -> None:
        """Say goodbye (the hub gives unacknowledged messages to others) and stop.

        Called on the data socket's owner thread, or once its event loop has ended: the data
        socket's last acknowledgements and its goodbye leave from here."""
        chan = self.data
        if chan.event_loop is not None:
            loop = chan.event_loop
            if not loop.is_closed() and events._get_running_loop() is not loop:
                done = threading.Event()
                loop.call_soon_threadsafe(self._close_data, done)
                if not done.wait(timeout):
                    log.warning("loop %r: the data connection did not close in time", self.loop)
            else:
                self._close_data()
        if self._thread is not None:
            if self._thread.is_alive():
                with contextlib.suppress(zmq.ZMQError):  # the I/O thread is on its way out
                    self.mailbox.put("bye")
                self._thread.join(timeout)
            if self._own_ctx:  # closing is asynchronous: term() waits (LINGER) for the sends
                self.ctx.term()
        else:
            self.sock.close(linger=0)
            chan.sock.close(linger=0)
            self.mailbox.close()

    def _close_data(self, done: threading.Event | None = None) -> None:
        chan = self.data
        try:
            chan.detach()
            with contextlib.suppress(zmq.ZMQError):
                chan.goodbye()
            chan.fail_all(QueueError("the hub connection closed"))
            chan.sock.close()
        finally:
            if done is not None:
                done.set()

    # -- the I/O thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.mailbox.receiver, zmq.POLLIN)
        chan = self.data
        if self._io_owns_data:
            poller.register(self._polled, zmq.POLLIN)
        timeout_ms = int(self.heartbeat * 1000)
        next_beat = 0.0
        try:
            while True:
                events_ = dict(poller.poll(timeout_ms))
                if self.sock in events_:
                    self._receive()
                if self._io_owns_data and self._polled in events_:
                    while chan.receive():
                        pass
                bye = False
                if self.mailbox.receiver in events_:
                    bye = self._mailbox_round(poller)
                if self._io_owns_data:
                    chan.flush()
                now = time.monotonic()
                if now >= next_beat or bye:
                    next_beat = now + self.heartbeat
                    self._beat()
                if bye:
                    if self._io_owns_data:
                        chan.goodbye()
                    self.sock.send(encode(Kind.BYE))
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
            if self._io_owns_data:
                chan.fail_all(QueueError("the hub connection closed"))
                chan.sock.close()

    def _beat(self) -> None:
        if self.status is not None:
            self.sock.send(
                encode(Kind.STATUS, status=self.status(), final=self.final, awaiting=self.awaiting)
            )
        else:
            self.sock.send(encode(Kind.PING))

    def _mailbox_round(self, poller: zmq.Poller) -> bool:
        bye = False
        for item in self.mailbox.take():
            kind = item[0]
            if kind == "call":
                if self._io_owns_data:
                    item[1](*item[2])
                else:  # the event loop took the socket over after this was posted
                    loop = self.data.event_loop
                    if loop is not None:
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(item[1], *item[2])
            elif kind == "handoff":
                _, loop, handed = item
                if self._io_owns_data:
                    self.data.flush()
                    poller.unregister(self._polled)
                    self._io_owns_data = False
                self.data.event_loop = loop
                handed.set()
            elif kind == "status":
                self._beat()
            elif kind == "bye":
                bye = True
        return bye

    def _receive(self) -> None:
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = parse(frame, FROM_HUB)
            except WireError as exc:
                log.warning("dropped malformed frame from the hub: %s", exc)
                continue
            self._handle(msg)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == Kind.PONG:
            hub = msg["hub"]
            if self.hub_id is not None and hub != self.hub_id:
                log.warning(
                    "the hub restarted: resending unacknowledged messages, renewing subscriptions"
                )
                self._data_call(self.data.hub_restarted)
            self.hub_id = hub
        elif kind == Kind.CONTROL and self.on_control is not None:
            try:
                self.on_control(DesiredState(msg["state"]))
            except Exception:
                log.exception("desired state %r of loop %r not applied", msg["state"], self.loop)
        elif kind == Kind.ERROR:
            log.error("hub: %s", msg["error"])
