"""Lets any thread hand work to the one thread that owns a ZeroMQ socket."""

from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import Any

import zmq

__all__ = ["Mailbox"]

_ids = itertools.count()


class Mailbox:
    """ZeroMQ sockets are not thread-safe: other threads put items in a queue and poke an
    inproc PAIR socket that the owner polls beside its real sockets."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        address = f"inproc://ostinato-mailbox-{os.getpid()}-{next(_ids)}"
        self.receiver = ctx.socket(zmq.PAIR)
        self.receiver.bind(address)
        self._sender = ctx.socket(zmq.PAIR)
        self._sender.connect(address)
        self._lock = threading.Lock()
        self._poked = False
        self._closed = False
        self._items: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def put(self, *item: Any) -> None:
        """Hand ``item`` to the owner; after close it is dropped (the owner has gone)."""
        self._items.put(item)
        with self._lock:
            if not self._poked and not self._closed:  # one poke wakes the owner for all
                self._poked = True
                self._sender.send(b"", zmq.NOBLOCK)

    def take(self) -> list[tuple[Any, ...]]:
        """Called by the owner when ``receiver`` is readable (or whenever it likes)."""
        with self._lock:
            self._poked = False
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
            self._closed = True
            self._sender.close(linger=0)
        self.receiver.close(linger=0)
