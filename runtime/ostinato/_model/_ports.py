"""What a loop's nodes may ask of their hub connection, with no ZeroMQ in sight.

Queue nodes are part of every workflow's plan, so validating a workflow imports them; they
name the connection by these types only, and the messaging modules (which import zmq) provide
them. So `ostinato validate` and the operator's admission webhook load no ZeroMQ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Done", "HubPort", "InboxPort", "QueueError", "Settler", "Submit"]


class QueueError(RuntimeError):
    """The hub refused a message (too large, unknown queue) or a subscription."""


#: Told the outcome of a put, on its event loop: ``done(None)`` or ``done(error)``, once.
Done = Callable[[QueueError | None], None]


class Settler:
    """A ``Done`` that may be told of several puts at once: ``many(n, error)`` stands for
    ``n`` calls, so that the connection settles a run of puts with one call."""

    __slots__ = ()

    def __call__(self, error: QueueError | None) -> None:
        self.many(1, error)

    def many(self, n: int, error: QueueError | None) -> None:
        raise NotImplementedError


#: ``submit(data, done)``: start a non-blocking node's side effect for ``data`` and return at
#: once; call ``done(None)`` or ``done(error)`` exactly once, on the loop's thread, when it has
#: finished. A node offers one by defining ``_submitter()`` (returning it, or None when this
#: node cannot): the queue writer does, so a put costs no task and no future of its own.
Submit = Callable[[Any, Callable[[BaseException | None], None]], None]


class InboxPort(Protocol):
    """Messages the hub delivered to one reader of one queue, taken by the loop's thread."""

    @property
    def error(self) -> str | None: ...

    def take(self) -> tuple[int, bytes, bytes, bool] | None: ...

    def take_many(self, limit: int) -> list[tuple[int, bytes, bytes, bool]]: ...

    def arrival(self) -> asyncio.Future[bool]: ...


@runtime_checkable
class HubPort(Protocol):
    """A loop replica's connection to its workflow's hub, as queue nodes use it."""

    def attach(self) -> None: ...

    def putter(self) -> Callable[[str, bytes, bytes, Done], None]: ...

    def list_putter(self) -> Callable[[str, list[bytes], bytes, Done], None]: ...

    def acker(self, queue: str) -> Callable[[int], None]: ...

    def subscribe(self, queue: str, prefetch: int) -> InboxPort: ...

    def ack(self, queue: str, msg_id: int) -> None: ...

    def ack_many(self, queue: str, msg_ids: list[int]) -> None: ...

    def give_back(self, queue: str, msg_ids: list[int]) -> None: ...

    def release_wait(self, queue: str, timeout: float) -> bool: ...

    def renew(self, queue: str) -> None: ...
