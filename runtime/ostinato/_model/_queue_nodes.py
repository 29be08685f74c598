"""QueueNode: writes a loop's data to a queue of the hub, or reads it in another loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, TypeVar

import msgpack
from pydantic import Field

from ._nodes import (
    BlockingNode,
    NodeConfig,
    NodeData,
    NonBlockingNode,
    ProducerNode,
    new_trace_id,
)
from ._ports import Done, HubPort, InboxPort, QueueError, Submit
from ._spec import QueueBatch

__all__ = ["QueueConfig", "QueueNode"]

#: How long a pausing reader waits for the hub to take its undelivered messages back, seconds.
RELEASE_TIMEOUT_SECONDS = 5.0

_T = TypeVar("_T")


class QueueConfig(NodeConfig):
    queue: str = Field(description="The queue, declared in spec.queues.")
    role: Literal["read", "write"] = Field(description="Set from the node's queue.read/write.")
    prefetch: int = Field(
        16,
        ge=1,
        le=100_000,
        description="Readers: messages the hub may deliver ahead of the loop taking them. Low "
        "keeps work queues evenly spread; high hides the round trip. A batch reader's is at "
        "least twice its batch's maxMessages.",
    )
    batch: QueueBatch | None = Field(None, description="Set from the node's queue.batch.")
    split: bool = Field(False, description="Set from the node's queue.split.")


def _source(meta: bytes) -> tuple[Any, Any, Any, Any]:
    """A writer's ``meta``: loop, iteration, trace_id, created_at (None where unknown). A map
    is read too: what older writers stored in a durable queue."""
    if not meta:
        return None, None, None, None
    value = msgpack.unpackb(meta, raw=False, strict_map_key=False)
    if isinstance(value, list) and len(value) == 4:
        return value[0], value[1], value[2], value[3]
    if isinstance(value, dict):
        return tuple(value.get(k) for k in ("loop", "iteration", "trace_id", "created_at"))  # type: ignore[return-value]
    return None, None, None, None


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


def encode_payload(queue: str, payload: Any, pack: Callable[[Any], bytes] | None = None) -> bytes:
    """``payload`` as msgpack, or a QueueError naming the queue; ``pack``: a Packer's of the
    caller's thread (a Packer resets itself after a failure), 6x cheaper than ``packb``."""
    try:
        if pack is not None:
            return pack(payload)
        return msgpack.packb(payload, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unsendable(queue, exc) from None


def _unsendable(queue: str, exc: Exception) -> QueueError:
    return QueueError(
        f"queue {queue!r}: the payload cannot be sent ({exc}); payloads crossing loops are "
        "msgpack data: None, bool, int, float, str, bytes, lists and string-keyed maps"
    )


class QueueNode(ProducerNode[QueueConfig], BlockingNode[QueueConfig], NonBlockingNode[QueueConfig]):
    """A writer sends each iteration's payload to its queue and, as a blocking node, waits for
    the hub's acknowledgement (which is how backpressure reaches the loop). A reader, as the
    producer, starts an iteration per message; as a blocking node it takes the next message.
    A message read is acknowledged when the iteration that carried it ends.

    Declared in a workflow with ``queue: {read: NAME}`` or ``queue: {write: NAME}``, no class.
    """

    def setup(self) -> None:
        client = self.context.hub
        if not isinstance(client, HubPort):
            raise QueueError(f"queue node {self.context.node!r} has no connection to a hub")
        self.client = client
        self._queue = self.config.queue
        self.inbox: InboxPort | None = None
        self._attached = False
        #: The inbox of a reader of one message an iteration, once attached (``produce``).
        self._inbox: InboxPort | None = None
        #: ``context.at_iteration_end`` without its call: the engine's list of finishers.
        self._finish: Callable[[Callable[[], None]], None] = (
            self.context._finisher or self.context.at_iteration_end
        )
        self._pack = msgpack.Packer(use_bin_type=True).pack  # this loop's thread only
        self._put: Callable[[str, bytes, bytes, Done], None] | None = None  # (_submit)
        self._put_list: Callable[[str, list[bytes], bytes, Done], None] | None = None
        #: Acknowledges a message taken (the loop's own once attached: see _attach).
        self._ack: Callable[[int], None] = partial(client.ack, self.config.queue)
        if self.config.role == "read":
            batch = self.config.batch
            prefetch = self.config.prefetch
            if batch is not None:  # the next batch arrives while this one is worked on
                prefetch = max(prefetch, min(2 * batch.max_messages, 100_000))
            self.inbox = client.subscribe(self.config.queue, prefetch)

    async def _next(self, producing: bool, current: NodeData | None = None) -> NodeData | None:
        """The next message. A producer gives way to a pause or stop (None: no iteration); a
        blocking reader is inside an iteration, which a pause lets finish: only a stop ends
        its wait, and then the iteration fails rather than go on without a message."""
        inbox = self.inbox
        assert inbox is not None
        if not self._attached:
            self._attach()
        if self.config.batch is not None:
            return await self._next_batch(self.config.batch, producing, current)
        item = inbox.take() or await self._arrived(inbox.take, producing)
        if item is None:
            return None
        return self._message(item, current)

    def _message(
        self, item: tuple[int, bytes, bytes, bool], current: NodeData | None = None
    ) -> NodeData:
        """A message taken, ``(id, payload, meta, redelivered)``, as the data of an iteration
        (``current``'s, for a blocking reader), acknowledged when that iteration ends."""
        msg_id, payload, meta_bytes, redelivered = item
        self._finish(partial(self._ack, msg_id))
        unpackb = msgpack.unpackb
        source = unpackb(meta_bytes, raw=False, strict_map_key=False) if meta_bytes else None
        if type(source) is list and len(source) == 4:  # what writers send: _source, inline
            loop, iteration, trace_id, created_at = source
        else:
            loop, iteration, trace_id, created_at = _source(meta_bytes)
        meta = {
            "queue": self._queue,
            "message_id": msg_id,
            "redelivered": bool(redelivered),
            "source": {"loop": loop, "iteration": iteration, "created_at": created_at},
        }
        value = unpackb(payload, raw=False, strict_map_key=False)
        if current is not None:  # a blocking reader: the same iteration, another payload
            out = current.with_payload(value)
            out.meta = {**current.meta, **meta}
            return out
        if type(trace_id) is not str or not trace_id:
            trace_id = str(trace_id or "") or new_trace_id()
        return NodeData(value, "", 0, time.time(), trace_id, meta)

    async def _arrived(self, take: Callable[[], _T], producing: bool) -> _T | None:
        """What ``take`` gives once the inbox has something; None when the loop stops while a
        producer waits (a blocking reader is told so by QueueError)."""
        inbox = self.inbox
        assert inbox is not None
        while True:
            got = take()
            if got:
                return got
            if inbox.error is not None:
                raise QueueError(inbox.error)
            if not await self.context.wait(inbox.arrival(), stop_only=not producing, owned=True):
                if producing:
                    return None
                raise QueueError(f"stopped while waiting for a message on {self.config.queue!r}")

    async def _next_batch(
        self, batch: QueueBatch, producing: bool, current: NodeData | None
    ) -> NodeData | None:
        """Up to ``batch.max_messages`` messages: once the first is here, what else has
        arrived, and for ``batch.max_wait_seconds`` what else arrives. The node gets their
        payloads as a list and, in ``meta["messages"]``, each one's meta; they are
        acknowledged together when the iteration ends, or given back if it failed."""
        inbox = self.inbox
        assert inbox is not None
        limit = batch.max_messages
        items = await self._arrived(partial(inbox.take_many, limit), producing)
        if items is None:
            return None
        if len(items) < limit and batch.max_wait_seconds > 0:
            # Messages taken are this iteration's: a pause or stop ends the wait, not the batch.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + batch.max_wait_seconds
            while len(items) < limit and inbox.error is None:
                left = deadline - loop.time()
                if left <= 0:
                    break
                arrived = inbox.arrival()
                timer = loop.call_later(left, _resolve, arrived)
                try:
                    waited = await self.context.wait(arrived, owned=True)
                finally:
                    timer.cancel()
                items.extend(inbox.take_many(limit - len(items)))
                if not waited:
                    break
        queue = self.config.queue
        ids = [item[0] for item in items]
        self.context.at_iteration_end(partial(self._end_batch, ids))
        unpack = msgpack.unpackb
        values = [unpack(item[1], raw=False, strict_map_key=False) for item in items]
        metas: list[dict[str, Any]] = []
        first_trace: Any = None
        # The messages of one writer's list share one meta (one object per frame): decoded once.
        sources: dict[bytes, tuple[Any, Any, Any, Any]] = {}
        for msg_id, _payload, meta_bytes, redelivered in items:
            source = sources.get(meta_bytes)
            if source is None:
                source = sources[meta_bytes] = _source(meta_bytes)
            loop_, iteration, trace_id, created_at = source
            if first_trace is None:
                first_trace = trace_id
            metas.append(
                {
                    "message_id": msg_id,
                    "redelivered": bool(redelivered),
                    "source": {"loop": loop_, "iteration": iteration, "created_at": created_at},
                }
            )
        meta = {"queue": queue, "messages": metas}
        if current is not None:  # a blocking reader: the same iteration, another payload
            out = current.with_payload(values)
            out.meta = {**current.meta, **meta}
            return out
        trace = str(first_trace or "") or new_trace_id()
        return NodeData(values, "", 0, time.time(), trace, meta)

    def _end_batch(self, ids: list[int]) -> None:
        """A batch's iteration has ended: acknowledged together, or given back whole for
        redelivery when the iteration failed."""
        if self.context.iteration_failed:
            self.client.give_back(self.config.queue, ids)
        else:
            self.client.ack_many(self.config.queue, ids)

    def _attach(self) -> None:
        """The loop's event loop takes the data socket over: from now on a put or a delivery
        does not change threads in this process (called from a coroutine of the loop)."""
        self.client.attach()
        self._attached = True
        if self.config.role == "read":
            self._ack = self.client.acker(self.config.queue)
            self._inbox = self.inbox if self.config.batch is None else None

    async def produce(self) -> NodeData | None:
        inbox = self._inbox
        if inbox is not None:  # a reader of one message an iteration, attached: one
            item = inbox.take()  # coroutine an iteration while messages are waiting
            if item is not None:
                return self._message(item)
        if self.config.role != "read":
            raise QueueError("a queue writer cannot be a producer")
        return await self._next(producing=True)

    async def process(self, data: NodeData) -> NodeData | None:
        if self.config.role == "read":
            return await self._next(producing=False, current=data)
        acked: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        refusal: list[BaseException] = []

        def done(error: BaseException | None) -> None:
            if error is not None:
                refusal.append(error)
            if not acked.done():
                acked.set_result(True)

        self._submit(data, done)
        if not await self.context.wait(acked, stop_only=True, owned=True):
            # A stop before the acknowledgement: the message may be parked in the hub, or may
            # never reach it (the hub down, the put still in this process when it exits). The
            # nodes after this one must not take it for acknowledged, so the iteration fails,
            # as a blocking reader's does when a stop ends its wait.
            raise QueueError(
                f"stopped before the hub acknowledged a message on {self.config.queue!r} "
                "(it may still reach the readers, or be lost)"
            )
        if refusal:  # the hub's refusal (too large, unknown queue)
            raise refusal[0]
        return data

    def _submitter(self) -> Submit | None:
        """As a non-blocking writer: puts without a task or a future each (see ``Submit``);
        a writer of one message an iteration gets its own, shorter path (``_submit_one``)."""
        if self.config.role != "write":
            return None
        return self._submit if self.config.split else self._submit_one

    def _submit_one(self, data: NodeData, done: Callable[[BaseException | None], None]) -> None:
        """``_submit`` of a writer without ``split``: the payload, and the meta as [loop,
        iteration, trace_id, created_at] (a map costs twice as much per message)."""
        pack = self._pack
        try:
            payload = pack(data.payload)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unsendable(self._queue, exc) from None
        meta = pack((data.loop, data.iteration, data.trace_id, data.created_at))
        (self._put or self._putter())(self._queue, payload, meta, done)

    def _submit(self, data: NodeData, done: Callable[[BaseException | None], None]) -> None:
        if not self.config.split:
            self._submit_one(data, done)
            return
        payloads, meta = self._encode_list(data)
        (self._put_list or self._list_putter())(self.config.queue, payloads, meta, done)

    def _encode_list(self, data: NodeData) -> tuple[list[bytes], bytes]:
        """A ``split`` writer's payload: a list, each item a message of its own."""
        items = data.payload
        queue = self.config.queue
        if not isinstance(items, list | tuple):
            raise QueueError(
                f"queue {queue!r}: the writer splits its payload (queue.split), so the payload "
                f"must be a list, not {type(items).__name__}"
            )
        pack = self._pack
        payloads = [encode_payload(queue, item, pack) for item in items]
        return payloads, pack((data.loop, data.iteration, data.trace_id, data.created_at))

    def _list_putter(self) -> Callable[[str, list[bytes], bytes, Done], None]:
        if not self._attached:
            self._attach()
        self._put_list = self.client.list_putter()
        return self._put_list

    def _putter(self) -> Callable[[str, bytes, bytes, Done], None]:
        """Puts from this loop's event loop, which takes the data socket over first."""
        if not self._attached:
            self._attach()
        self._put = self.client.putter()
        return self._put

    def on_pause(self) -> None:
        # Messages waiting here go to readers that still run.
        if self.inbox is not None and not self.client.release_wait(
            self.config.queue, RELEASE_TIMEOUT_SECONDS
        ):
            self.context.logger.warning(
                "the hub did not confirm the release of %r within %gs",
                self.config.queue,
                RELEASE_TIMEOUT_SECONDS,
            )

    def on_resume(self) -> None:
        if self.inbox is not None:
            self.client.renew(self.config.queue)

    def teardown(self) -> None:
        return None
