"""The orchestrator's ZeroMQ control channel to process loops (it grows into the messaging hub)."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import zmq

from ._wire import WireError, decode, encode

__all__ = ["ControlServer", "Mailbox"]

log = logging.getLogger("ostinato.hub")
_ids = itertools.count()

Handler = Callable[[dict[str, Any]], None]


class Mailbox:
    """Lets any thread hand frames to the one thread that owns a ZeroMQ socket.

    ZeroMQ sockets are not thread-safe; other threads put frames in a queue and poke an inproc
    PAIR socket that the owner polls beside its real socket.
    """

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        address = f"inproc://ostinato-mailbox-{os.getpid()}-{next(_ids)}"
        self.receiver = ctx.socket(zmq.PAIR)
        self.receiver.bind(address)
        self._sender = ctx.socket(zmq.PAIR)
        self._sender.connect(address)
        self._lock = threading.Lock()
        self._items: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def put(self, *item: Any) -> None:
        self._items.put(item)
        with self._lock:
            self._sender.send(b"", zmq.NOBLOCK)

    def take(self) -> list[tuple[Any, ...]]:
        """Called by the owner when ``receiver`` is readable."""
        while True:
            try:
                self.receiver.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        items = []
        while True:
            try:
                items.append(self._items.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        with self._lock:
            self._sender.close(linger=0)
        self.receiver.close(linger=0)


class ControlServer:
    """A ROUTER socket in its own thread: loops connect, say hello, send state; the
    orchestrator sends them control commands. Each peer has a routing id and a handler.

    Malformed frames are dropped, counted (``malformed``) and logged; the server keeps serving.
    """

    def __init__(self, endpoint: str | None = None) -> None:
        self._tmpdir: str | None = None
        if endpoint is None:
            self._tmpdir = tempfile.mkdtemp(prefix="ostinato-")
            endpoint = f"ipc://{self._tmpdir}/control.sock"
        self.ctx: zmq.Context[Any] = zmq.Context()
        self._router = self.ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.bind(endpoint)
        self.endpoint: str = self._router.get_string(zmq.LAST_ENDPOINT)
        self._mailbox = Mailbox(self.ctx)
        self._handlers: dict[bytes, Handler] = {}
        self._lock = threading.Lock()
        self.malformed = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ostinato-control", daemon=True)
        self._thread.start()

    def register(self, identity: bytes, handler: Handler) -> None:
        with self._lock:
            self._handlers[identity] = handler

    def unregister(self, identity: bytes) -> None:
        with self._lock:
            self._handlers.pop(identity, None)

    def send(self, identity: bytes, kind: str, **fields: Any) -> None:
        """Queue a message to a peer (from any thread); dropped with a log if it is gone."""
        self._mailbox.put(identity, encode(kind, **fields))

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._mailbox.receiver, zmq.POLLIN)
        while not self._closing.is_set():
            events = dict(poller.poll(200))
            if self._mailbox.receiver in events:
                for identity, frame in self._mailbox.take():
                    try:
                        self._router.send_multipart([identity, frame], zmq.NOBLOCK)
                    except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer is gone
                        log.debug("control message to %r not sent: %s", identity, exc)
            if self._router in events:
                self._receive()
        self._router.close(linger=0)
        self._mailbox.close()

    def _receive(self) -> None:
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._drop(frames[0] if frames else b"?", f"{len(frames)} frames, expected 2")
                continue
            identity, frame = frames
            try:
                msg = decode(frame)
            except WireError as exc:
                self._drop(identity, str(exc))
                continue
            with self._lock:
                handler = self._handlers.get(identity)
            if handler is None:
                log.debug("message %r from unknown peer %r ignored", msg.get("t"), identity)
                continue
            try:
                handler(msg)
            except Exception:
                log.exception("handler for %r failed on %r", identity, msg.get("t"))

    def _drop(self, identity: bytes, why: str) -> None:
        self.malformed += 1
        log.warning("dropped malformed frame from %r: %s", identity[:64], why)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self.ctx.term()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
