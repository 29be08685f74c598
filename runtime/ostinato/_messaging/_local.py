"""Loops in the hub's own process reach it without a socket: the loop's thread runs the hub's
routing under its lock, and the hub hands messages back through a queue and a descriptor."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref
from collections import deque
from typing import Any, Protocol

import zmq

__all__ = ["Linkable", "LocalLink", "hub_at", "register", "unregister"]

_EVENTS, _POLLIN, _POLLOUT = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.POLLOUT)


class Linkable(Protocol):
    """What a link needs of its hub (``_hub.Hub``)."""

    def link(self, identity: bytes) -> LocalLink: ...

    def _local_frame(self, identity: bytes, msg: dict[str, Any]) -> None: ...

    def _unlink(self, link: LocalLink) -> None: ...


_hubs: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def register(endpoint: str, hub: Linkable) -> None:
    """``hub`` serves ``endpoint`` (its ``inproc://`` one) in this process."""
    _hubs[endpoint] = hub


def unregister(endpoint: str) -> None:
    _hubs.pop(endpoint, None)


def hub_at(endpoint: str) -> Linkable | None:
    """The hub of this process bound to ``endpoint``, if any."""
    hub: Linkable | None = _hubs.get(endpoint)
    return hub


class LocalLink:
    """A loop's data connection to a hub in the same process, in place of its DEALER.

    It has the part of a socket's interface the data channel uses. ``send`` hands a message to
    the hub on the caller's thread: the hub routes it under its lock and answers at once,
    deliveries to other in-process readers included, so a put costs no wake-up of the hub's
    thread. Messages for this loop wait in a queue, as they are (no frame is made: both ends
    are this process); a descriptor (``FD``) is readable while the queue holds any, so the
    loop's event loop (or its connection's I/O thread) waits on it as on a socket's. Messages
    keep their order: the hub pushes under its lock.
    """

    def __init__(self, hub: Linkable, identity: bytes) -> None:
        self.identity = identity
        self._hub = hub
        self._frames: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        #: The descriptor holds a signal (it is written only while it holds none).
        self._signalled = False
        #: Set while an event loop owns the channel (``DataChannel.attach``): the channel
        #: then looks for input after every send (``DataChannel._sent``), so what the hub
        #: answers inside this link's own ``send`` needs no signal (no system call).
        self.attached = False
        self._sending = False
        self.closed = False
        if hasattr(os, "eventfd"):
            self.FD = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - not Linux
            self.FD, self._wfd = os.pipe()
            os.set_blocking(self.FD, False)

    def fileno(self) -> int:
        return self.FD

    # -- the loop's side -----------------------------------------------------------------------

    def send(self, msg: dict[str, Any], flags: int = 0) -> None:
        if self.closed:
            raise zmq.ZMQError(zmq.ENOTSOCK, "the link to the hub is closed")
        self._sending = self.attached
        try:
            self._hub._local_frame(self.identity, msg)
        finally:
            self._sending = False

    def recv(self, flags: int = 0) -> dict[str, Any]:
        with self._lock:
            if not self._frames:
                raise zmq.Again()
            frame = self._frames.popleft()
            if not self._frames and self._signalled:
                self._signalled = False
                with contextlib.suppress(BlockingIOError):
                    os.read(self.FD, 64)
            return frame

    def getsockopt(self, option: int) -> int:
        if option != _EVENTS:
            raise zmq.ZMQError(zmq.EINVAL, f"option {option} of a local link")
        return (_POLLIN if self._frames else 0) | _POLLOUT

    def poll(self, timeout: int | None = None, flags: int = _POLLIN) -> int:
        """Wait up to ``timeout`` ms for a frame; the events ready, as ``Socket.poll``."""
        if not self._frames and timeout != 0:
            waiter = select.poll()
            waiter.register(self.FD, select.POLLIN)
            waiter.poll(-1 if timeout is None else timeout)
        return self.getsockopt(_EVENTS) & flags

    def close(self, linger: int | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._frames.clear()
            os.close(self.FD)
            if self._wfd != self.FD:  # pragma: no cover - not Linux
                os.close(self._wfd)
        self._hub._unlink(self)

    # -- the hub's side ------------------------------------------------------------------------

    def push(self, frame: dict[str, Any]) -> None:
        """A message for this loop (the hub, under its lock); dropped once the link is closed,
        as a socket's to a peer that has gone."""
        with self._lock:
            if self.closed:
                return
            if not self._signalled and not self._sending:
                self._signalled = True
                os.write(self._wfd, b"\1\0\0\0\0\0\0\0")
            self._frames.append(frame)
