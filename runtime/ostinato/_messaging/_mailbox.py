"""Lets any thread hand work to the one thread that owns a ZeroMQ socket."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

__all__ = ["Mailbox"]


class Mailbox:
    """ZeroMQ sockets are not thread-safe: other threads put items in a queue and poke a pipe
    whose read end (``receiver``, a file descriptor) the owner polls beside its sockets.

    A pipe, not a ZeroMQ socket: the owner polls it on every wake-up, and a plain descriptor
    costs ``poll`` nothing more, where a ZeroMQ socket costs two ``EVENTS`` queries (each a
    system call) per ``zmq_poll``."""

    def __init__(self) -> None:
        self.receiver, self._sender = os.pipe()
        os.set_blocking(self.receiver, False)
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
                os.write(self._sender, b"\0")

    def take(self) -> list[tuple[Any, ...]]:
        """Called by the owner when ``receiver`` is readable (or whenever it likes)."""
        with self._lock:
            self._poked = False
            if not self._closed:
                try:
                    while os.read(self.receiver, 4096):
                        pass
                except BlockingIOError:
                    pass
        items = []
        while True:
            try:
                items.append(self._items.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._sender)
            os.close(self.receiver)
