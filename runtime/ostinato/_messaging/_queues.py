"""Queue routing inside the hub: buffers, credit, acknowledgements, drops and redelivery.

Pure bookkeeping, no sockets: the hub feeds it what arrives and sends what it puts in the
:class:`Outbox`. One thread (the hub's) owns every object here.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._model._spec import QueueMode, QueueOnFull, QueueSpec

__all__ = ["Outbox", "QueueCounters", "QueueState", "Store"]


class Store(Protocol):
    """What a durable queue needs of its store (``_store.DurableStore``)."""

    def last_id(self, queue: str) -> int: ...
    def add(
        self, queue: str, msg_id: int, payload: bytes, meta: bytes, groups: Sequence[str]
    ) -> None: ...
    def done(self, queue: str, group: str, msg_ids: Iterable[int]) -> None: ...
    def pending(self, queue: str) -> list[tuple[str, int, bytes, bytes]]: ...
    def commit(self) -> None: ...


@dataclass(slots=True)
class Message:
    id: int
    payload: bytes
    meta: bytes
    redelivered: bool = False


@dataclass(slots=True)
class Consumer:
    identity: bytes
    credit: int = 0
    inflight: dict[int, Message] = field(default_factory=dict)


@dataclass(slots=True)
class Group:
    """Who reads a queue as one: a reading loop (broadcast) or all readers (work)."""

    name: str
    buffer: deque[Message] = field(default_factory=deque)
    consumers: dict[bytes, Consumer] = field(default_factory=dict)
    turn: int = 0  # round-robin position among consumers


@dataclass(slots=True)
class QueueCounters:
    enqueued: int = 0
    delivered: int = 0
    acknowledged: int = 0
    dropped: int = 0
    redelivered: int = 0
    refused: int = 0


class Outbox:
    """What the hub must send after a round: acks to writers, messages to consumers."""

    def __init__(self) -> None:
        self.acks: dict[bytes, list[list[Any]]] = defaultdict(list)
        #: Runs of a writer's puts taken in one go, (queue, lo, hi): one entry per run, not
        #: one per message (never of a durable queue: those are taken one by one).
        self.runs: dict[bytes, list[tuple[str, int, int]]] = defaultdict(list)
        self.messages: dict[tuple[bytes, str], list[list[Any]]] = defaultdict(list)
        #: A durable store failed this round: it rolled back the whole open batch, so no
        #: durable put of this round may be acknowledged as stored.
        self.store_failed: str | None = None
        #: This round's refusals (writer, queue, seq, error): the hub remembers them, so that
        #: a put sent again is refused again, not acknowledged as taken.
        self.refusals: list[tuple[bytes, str, int, str]] = []

    def ack(self, writer: bytes, queue: str, seq: int, error: str | None = None) -> None:
        if error is None:
            self.acks[writer].append([queue, seq])
        else:
            self.acks[writer].append([queue, seq, error])
            self.refusals.append((writer, queue, seq, error))

    def ack_run(self, writer: bytes, queue: str, lo: int, hi: int) -> None:
        """Puts ``lo`` to ``hi`` of ``writer`` accepted."""
        self.runs[writer].append((queue, lo, hi))

    def deliver(self, consumer: bytes, queue: str, msg: Message) -> None:
        self.messages[(consumer, queue)].append([msg.id, msg.payload, msg.meta, msg.redelivered])

    def __bool__(self) -> bool:
        return bool(self.acks or self.messages or self.runs)

    def clear(self) -> None:
        self.acks.clear()
        self.runs.clear()
        self.messages.clear()
        self.store_failed = None
        self.refusals.clear()


@dataclass(slots=True)
class _Parked:
    writer: bytes
    seq: int
    payload: bytes
    meta: bytes


class QueueState:
    """One queue: a buffer per consumer group, bounded by ``capacity``; credit-based delivery.

    A message is accepted (and its writer acknowledged) once it is in every group's buffer.
    When a buffer is full: ``block`` parks the put, unacknowledged, until there is room (the
    writer's window then stops it: backpressure, nothing lost); ``dropOldest`` evicts the
    group's oldest waiting message; ``dropNewest`` leaves the new one out of that group. Every
    drop is counted. Consumers get messages only against credit, and hold them until they
    acknowledge them; a consumer that is lost gives its unacknowledged messages back, to the
    front of the buffer, for another consumer (counted as redelivered).
    """

    def __init__(self, spec: QueueSpec, readers: Sequence[str], store: Store | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        names = ["*"] if spec.mode is QueueMode.WORK else list(dict.fromkeys(readers))
        self.groups = {name: Group(name) for name in names}
        self.parked: deque[_Parked] = deque()
        self.counters = QueueCounters()
        self.store = store if spec.durable else None
        self.next_id = 1
        if self.store is not None:
            self.next_id = self.store.last_id(self.name) + 1
            for group, msg_id, payload, meta in self.store.pending(self.name):
                if group in self.groups:  # it may have been delivered before the restart
                    self.groups[group].buffer.append(Message(msg_id, payload, meta, True))
                    self.counters.redelivered += 1

    def group_of(self, loop: str) -> Group | None:
        return self.groups.get("*" if self.spec.mode is QueueMode.WORK else loop)

    @property
    def depth(self) -> int:
        """Messages waiting, in the fullest group (delivered-unacknowledged ones excluded)."""
        waiting = max((len(g.buffer) for g in self.groups.values()), default=0)
        return waiting + len(self.parked)

    def in_flight(self) -> list[int]:
        """Messages delivered and not yet acknowledged, per consumer (any thread: a copy of
        the consumers is taken first, so the hub's thread may change them meanwhile)."""
        return [
            len(c.inflight) for g in list(self.groups.values()) for c in list(g.consumers.values())
        ]

    # -- writers -------------------------------------------------------------------------------

    def put(self, writer: bytes, seq: int, payload: bytes, meta: bytes, out: Outbox) -> None:
        """A lone put: a batch of one (taken at once by ``_take_run`` when there is room)."""
        self.put_many(writer, [(seq, payload, meta)], out)

    def put_many(self, writer: bytes, items: Iterable[Sequence[Any]], out: Outbox) -> None:
        """A writer's batch of ``(seq, payload, meta)``, in order. Delivery runs once for the
        batch, and before any put that finds a buffer full (so that what credit can take
        leaves first): the outcome is the same as putting and delivering one by one."""
        limit = self.spec.max_message_bytes
        if not isinstance(items, list):
            items = list(items)
        if self.store is None and not self.parked and self._take_run(writer, items, out):
            return
        block = self.spec.on_full is QueueOnFull.BLOCK
        for seq, payload, meta in items:
            if len(payload) > limit:
                self.counters.refused += 1
                out.ack(
                    writer,
                    self.name,
                    seq,
                    f"message of {len(payload)} bytes exceeds maxMessageBytes "
                    f"({limit}) of queue {self.name!r}",
                )
                continue
            if not self.parked:
                full = self._full()
                if full:  # deliver first: room may appear (parked stays empty: none to let in)
                    self._pump(out)
                    full = self._full()
                if not (block and full):
                    self._accept(writer, seq, payload, meta, out, full)
                    continue
            self.parked.append(_Parked(writer, seq, payload, meta))
        self._pump(out)

    def _take_run(self, writer: bytes, items: list[Sequence[Any]], out: Outbox) -> bool:
        """A run that every buffer has room for and no message of it too large, taken in at
        once (the common case; the outcome of putting one by one, without the checks each
        put needs when a buffer may fill). False, and nothing done, otherwise."""
        cap, limit = self.spec.capacity, self.spec.max_message_bytes
        groups = list(self.groups.values())
        fullest = max((len(g.buffer) for g in groups), default=0)
        if fullest + len(items) > cap:
            return False
        for item in items:
            if len(item[1]) > limit:
                return False
        next_id, name = self.next_id, self.name
        buffers = [g.buffer for g in groups]
        lo, hi = items[0][0], items[-1][0]
        if len(items) > 1 and hi - lo == len(items) - 1:  # consecutive, as a frame's are
            out.ack_run(writer, name, lo, hi)
        else:
            acks = out.acks[writer]
            for item in items:
                acks.append([name, item[0]])
        if len(buffers) == 1:
            append = buffers[0].append
            for _seq, payload, meta in items:
                append(Message(next_id, payload, meta))
                next_id += 1
        else:
            for _seq, payload, meta in items:
                msg = Message(next_id, payload, meta)
                next_id += 1
                for buffer in buffers:
                    buffer.append(msg)
        self.next_id = next_id
        self.counters.enqueued += len(items)
        self._pump(out)
        return True

    def _full(self) -> bool:
        cap = self.spec.capacity
        return any(len(g.buffer) >= cap for g in self.groups.values())

    def _accept(
        self, writer: bytes, seq: int, payload: bytes, meta: bytes, out: Outbox, full: bool = True
    ) -> None:
        """Into every group's buffer, by the full-buffer policy; ``full=False``: the caller
        knows that no buffer is full (the common case: nothing to drop)."""
        msg = Message(self.next_id, payload, meta)
        cap = self.spec.capacity
        if full and self.spec.on_full is QueueOnFull.DROP_NEWEST:
            into = [g for g in self.groups.values() if len(g.buffer) < cap]
        else:
            into = list(self.groups.values())
        if self.store is not None and into:  # on disk first: a failed write takes nothing in
            try:
                self.store.add(self.name, msg.id, payload, meta, [g.name for g in into])
            except Exception as exc:
                out.store_failed = f"the hub could not store the message: {exc}"
                self.counters.refused += 1
                out.ack(writer, self.name, seq, out.store_failed)
                return
        self.next_id += 1
        self.counters.dropped += len(self.groups) - len(into)
        for group in into:
            if len(group.buffer) >= cap:  # dropOldest (block never gets here when full)
                old = group.buffer.popleft()
                self.counters.dropped += 1
                self._store_done(group.name, (old.id,), out)
            group.buffer.append(msg)
        self.counters.enqueued += 1
        out.ack(writer, self.name, seq)

    def _store_done(self, group: str, ids: Sequence[int], out: Outbox) -> None:
        """Forget messages on disk; a failure leaves them pending there (delivered again after
        a restart: at least once) and spoils the round's batch."""
        if self.store is None or not ids:
            return
        try:
            self.store.done(self.name, group, ids)
        except Exception as exc:
            out.store_failed = f"the hub could not store the message: {exc}"

    def _pump(self, out: Outbox) -> None:
        """Deliver what credit allows; let parked puts in as room appears; until neither can."""
        while True:
            for group in self.groups.values():
                self._dispatch(group, out)
            if not self.parked or self._full():
                return
            p = self.parked.popleft()
            self._accept(p.writer, p.seq, p.payload, p.meta, out)

    # -- consumers -----------------------------------------------------------------------------

    def subscribe(self, consumer: bytes, loop: str, credit: int, out: Outbox) -> str | None:
        """A reader replica joins (or rejoins) with ``credit``; None, or why it cannot."""
        group = self.group_of(loop)
        if group is None:
            return f"loop {loop!r} does not read queue {self.name!r}"
        entry = group.consumers.get(consumer)
        if entry is None:
            entry = group.consumers[consumer] = Consumer(consumer)
        entry.credit = max(credit - len(entry.inflight), 0)
        self._pump(out)
        return None

    def acknowledge(self, consumer: bytes, loop: str, ids: Sequence[int], out: Outbox) -> None:
        """The consumer finished with these messages: forget them, and give it that credit."""
        group = self.group_of(loop)
        if group is None:
            return
        entry = group.consumers.get(consumer)
        if entry is None:
            return
        done = [i for i in ids if entry.inflight.pop(i, None) is not None]
        self.counters.acknowledged += len(done)
        entry.credit += len(done)  # whatever the store says: the consumer is free again
        self._store_done(group.name, done, out)
        self._pump(out)

    def give_back(self, consumer: bytes, loop: str, ids: Sequence[int], out: Outbox) -> None:
        """The consumer gives these messages back unacknowledged (a batch whose iteration
        failed): to the front of the buffer, in order, for whichever consumer has credit
        (counted as redelivered); the consumer gets that credit back."""
        group = self.group_of(loop)
        entry = group.consumers.get(consumer) if group is not None else None
        if group is None or entry is None:
            return
        back = [m for m in (entry.inflight.pop(i, None) for i in ids) if m is not None]
        entry.credit += len(back)
        for msg in sorted(back, key=lambda m: m.id, reverse=True):
            msg.redelivered = True
            group.buffer.appendleft(msg)
        self.counters.redelivered += len(back)
        self._pump(out)

    def acknowledge_runs(
        self, consumer: bytes, loop: str, runs: Sequence[Sequence[int]], out: Outbox
    ) -> None:
        """:meth:`acknowledge` of the ids in runs [lo, hi] (a run longer than what the consumer
        holds is walked through what it holds: a run costs what it names, not its length)."""
        group = self.group_of(loop)
        entry = group.consumers.get(consumer) if group is not None else None
        if entry is None:
            return
        inflight = entry.inflight
        if len(runs) == 1 and runs[0][0] == runs[0][1]:  # the lone message
            self.acknowledge(consumer, loop, runs[0][:1], out)
            return
        ids: list[int] = []
        for lo, hi in runs:
            if hi - lo < len(inflight):
                ids.extend(range(lo, hi + 1))
            else:
                ids.extend(i for i in inflight if lo <= i <= hi)
        self.acknowledge(consumer, loop, ids, out)

    def release(self, consumer: bytes, loop: str, out: Outbox) -> None:
        """A paused consumer (it has acknowledged all it took) gives back what it holds, to the
        front of the buffer for others, and takes no more until it subscribes again."""
        group = self.group_of(loop)
        entry = group.consumers.get(consumer) if group is not None else None
        if group is None or entry is None:
            return
        entry.credit = 0
        back = list(entry.inflight.values())
        entry.inflight.clear()
        for msg in sorted(back, key=lambda m: m.id, reverse=True):
            msg.redelivered = True
            group.buffer.appendleft(msg)
        self.counters.redelivered += len(back)
        self._pump(out)

    def lost(self, consumer: bytes, out: Outbox) -> int:
        """A consumer is gone: its unacknowledged messages go back for others. Returns how many."""
        back = 0
        for group in self.groups.values():
            entry = group.consumers.pop(consumer, None)
            if entry is None or not entry.inflight:
                continue
            returned = sorted(entry.inflight.values(), key=lambda m: m.id, reverse=True)
            for msg in returned:
                msg.redelivered = True
                group.buffer.appendleft(msg)
            back += len(returned)
        self.counters.redelivered += back
        self._pump(out)
        return back

    def _dispatch(self, group: Group, out: Outbox) -> None:
        if not group.buffer or not group.consumers:
            return
        ready = [c for c in group.consumers.values() if c.credit > 0]
        if len(ready) == 1:  # one consumer with credit: a run of messages at once
            consumer = ready[0]
            take = min(consumer.credit, len(group.buffer))
            popleft, inflight = group.buffer.popleft, consumer.inflight
            rows = out.messages[(consumer.identity, self.name)]
            for _ in range(take):
                msg = popleft()
                inflight[msg.id] = msg
                rows.append([msg.id, msg.payload, msg.meta, msg.redelivered])
            consumer.credit -= take
            self.counters.delivered += take
            return
        while group.buffer and ready:
            group.turn = (group.turn + 1) % len(ready)
            consumer = ready[group.turn]
            msg = group.buffer.popleft()
            consumer.credit -= 1
            consumer.inflight[msg.id] = msg
            self.counters.delivered += 1
            out.deliver(consumer.identity, self.name, msg)
            if consumer.credit == 0:
                ready.remove(consumer)
