"""Queue routing inside the hub: buffers, credit, acknowledgements, drops and redelivery.

Pure bookkeeping, no sockets: the hub feeds it what arrives and sends what it puts in the
:class:`Outbox`. One thread (the hub's) owns every object here. Messages are kept in runs
(:class:`Run`): a writer's frame of puts taken in one go is one object in every buffer, in the
in-flight tables and among the deliveries, and credit, acknowledgements, give-backs and lost
consumers cut it into pieces, not into a message each.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from .._model._spec import QueueMode, QueueOnFull, QueueSpec

__all__ = ["Metas", "Outbox", "QueueCounters", "QueueState", "Run", "Store"]

#: The metas of a run: one bytes object every message shares, a list of one each (as a frame
#: without an index has them: they go out one each again, nothing to look for), or a tuple of
#: one each where some repeat (from a frame's index: they go out once each again).
Metas = bytes | list[bytes] | tuple[bytes, ...]


class Store(Protocol):
    """What a durable queue needs of its store (``_store.DurableStore``)."""

    def last_id(self, queue: str) -> int: ...
    def add(
        self, queue: str, msg_id: int, payload: bytes, meta: bytes, groups: Sequence[str]
    ) -> None: ...
    def done(self, queue: str, group: str, msg_ids: Iterable[int]) -> None: ...
    def pending(self, queue: str) -> list[tuple[str, int, bytes, bytes]]: ...
    def commit(self) -> None: ...


class Run:
    """Messages ``lo`` to ``hi`` of a queue (consecutive ids): ``payloads[start:start + n]``
    of a list the run shares with the other pieces of its put frame, and their metas
    (:data:`Metas`, parallel to ``payloads`` when not one for all). A run never changes once
    made (the groups of a broadcast queue hold the same one): a cut makes new runs. ``size``
    is at least its payloads' and metas' bytes (a piece keeps the size of its whole run), so
    that a delivery is seen to fit in a frame without measuring it again."""

    __slots__ = ("again", "hi", "lo", "meta", "payloads", "size", "start")

    def __init__(
        self,
        lo: int,
        hi: int,
        payloads: list[bytes],
        start: int,
        meta: Metas,
        size: int,
        again: bool = False,
    ) -> None:
        self.lo = lo
        self.hi = hi
        self.payloads = payloads
        self.start = start
        self.meta = meta
        self.size = size
        self.again = again  # redelivered: a consumer may have had these messages before

    def piece(self, lo: int, hi: int) -> Run:
        """Messages ``lo`` to ``hi`` of this run (within it), sharing its lists."""
        start = self.start + lo - self.lo
        return Run(lo, hi, self.payloads, start, self.meta, self.size, self.again)

    def kept(self, lo: int, hi: int) -> Run:
        """:meth:`piece`, its lists cut to its own messages when it is less than half of
        them: what stays held after part of a run is acknowledged does not keep much more
        of its frame in memory than itself."""
        if 2 * (hi - lo + 1) >= len(self.payloads):
            return self.piece(lo, hi)
        i, j = self.start + lo - self.lo, self.start + hi - self.lo + 1
        meta = self.meta if isinstance(self.meta, bytes) else self.meta[i:j]
        return Run(lo, hi, self.payloads[i:j], 0, meta, self.size, self.again)

    def given_back(self) -> Run:
        """This run marked redelivered, its lists cut to its own messages (a piece going
        back to a buffer does not keep the rest of its frame in memory)."""
        i, j = self.start, self.start + self.hi - self.lo + 1
        meta = self.meta if isinstance(self.meta, bytes) else self.meta[i:j]
        return Run(self.lo, self.hi, self.payloads[i:j], 0, meta, self.size, True)

    def payload_list(self) -> list[bytes]:
        """The run's payloads, in order, in a list of their own (one C copy of the pointers:
        a linked reader gets the list itself, and the run must not share it)."""
        i = self.start
        return self.payloads[i : i + self.hi - self.lo + 1]

    def meta_list(self) -> Sequence[bytes]:
        """Each message's meta, in order."""
        n = self.hi - self.lo + 1
        if isinstance(self.meta, bytes):
            return [self.meta] * n
        return self.meta[self.start : self.start + n]

    def messages(self) -> list[Message]:
        """The run a message each (for inspection: the hub never needs them)."""
        return [
            Message(i, p, m, self.again)
            for i, p, m in zip(
                range(self.lo, self.hi + 1), self.payload_list(), self.meta_list(), strict=True
            )
        ]

    def __repr__(self) -> str:
        return f"Run({self.lo}..{self.hi}{', again' if self.again else ''})"


@dataclass(slots=True)
class Message:
    """One message of a run, as :attr:`Group.buffer` and :attr:`Consumer.inflight` show it."""

    id: int
    payload: bytes
    meta: bytes
    redelivered: bool = False


@dataclass(slots=True)
class Consumer:
    identity: bytes
    credit: int = 0
    #: The runs delivered and not yet acknowledged, by their first id.
    held: dict[int, Run] = field(default_factory=dict)
    count: int = 0  # messages in ``held``
    #: No run in ``held`` is longer: the run holding id i starts at most this much before i.
    longest: int = 1

    @property
    def inflight(self) -> dict[int, Message]:
        """The messages held, by id (for inspection)."""
        return {m.id: m for run in self.held.values() for m in run.messages()}


@dataclass(slots=True)
class Group:
    """Who reads a queue as one: a reading loop (broadcast) or all readers (work)."""

    name: str
    #: The messages waiting for delivery, as runs in order; ``size`` of them in all.
    runs: deque[Run] = field(default_factory=deque)
    size: int = 0
    consumers: dict[bytes, Consumer] = field(default_factory=dict)
    turn: int = 0  # round-robin position among consumers

    @property
    def buffer(self) -> list[Message]:
        """The messages waiting, in order (for inspection)."""
        return [m for run in self.runs for m in run.messages()]


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
        #: Per consumer and queue, the runs delivered this round, in order.
        self.deliveries: dict[tuple[bytes, str], list[Run]] = defaultdict(list)
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

    @property
    def messages(self) -> dict[tuple[bytes, str], list[list[Any]]]:
        """The deliveries a row [id, payload, meta, redelivered] each (for inspection)."""
        return {
            key: [[m.id, m.payload, m.meta, m.redelivered] for r in runs for m in r.messages()]
            for key, runs in self.deliveries.items()
            if runs
        }

    def __bool__(self) -> bool:
        return bool(self.acks or self.deliveries or self.runs)

    def clear(self) -> None:
        if self.acks:
            self.acks.clear()
        if self.runs:
            self.runs.clear()
        if self.deliveries:
            self.deliveries.clear()
        self.store_failed = None
        if self.refusals:
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
        self._groups = list(self.groups.values())
        self.parked: deque[_Parked] = deque()
        self.counters = QueueCounters()
        self.store = store if spec.durable else None
        self.next_id = 1
        if self.store is not None:
            self.next_id = self.store.last_id(self.name) + 1
            for group, msg_id, payload, meta in self.store.pending(self.name):
                if group in self.groups:  # it may have been delivered before the restart
                    g = self.groups[group]
                    g.runs.append(
                        Run(msg_id, msg_id, [payload], 0, meta, len(payload) + len(meta), True)
                    )
                    g.size += 1
                    self.counters.redelivered += 1

    def group_of(self, loop: str) -> Group | None:
        return self.groups.get("*" if self.spec.mode is QueueMode.WORK else loop)

    @property
    def depth(self) -> int:
        """Messages waiting, in the fullest group (delivered-unacknowledged ones excluded)."""
        waiting = max((g.size for g in self._groups), default=0)
        return waiting + len(self.parked)

    def in_flight(self) -> list[int]:
        """Messages delivered and not yet acknowledged, per consumer (any thread: a copy of
        the consumers is taken first, so the hub's thread may change them meanwhile)."""
        return [c.count for g in self._groups for c in list(g.consumers.values())]

    # -- writers -------------------------------------------------------------------------------

    def put(self, writer: bytes, seq: int, payload: bytes, meta: bytes, out: Outbox) -> None:
        """A lone put: a run of one."""
        self.put_run(writer, seq, [payload], [meta], None, out)

    def put_run(
        self,
        writer: bytes,
        first: int,
        payloads: list[bytes],
        metas: list[bytes],
        index: list[int] | None,
        out: Outbox,
    ) -> None:
        """A writer's puts ``first``, ``first + 1``, ... as a frame has them: ``metas`` once
        each and ``index`` (payload i has ``metas[index[i]]``; None: all have ``metas[0]``,
        or each its own). When every buffer has room for all of them and none is too large
        (the common case) they are taken as one :class:`Run`, the frame's own list, and
        acknowledged as one; otherwise one by one (:meth:`put_many`)."""
        n = len(payloads)
        meta: Metas
        if index is not None:
            meta = metas[index[0]] if n == 1 else itemgetter(*index)(metas)  # a tuple
        elif len(metas) == 1:
            meta = metas[0]
        else:
            meta = metas
        if self.store is None and not self.parked:
            groups = self._groups
            if len(groups) == 1:
                fullest = groups[0].size
            else:
                fullest = max((g.size for g in groups), default=0)
            # The payloads' bytes: measured once, for the size limit and for the frames out.
            size = len(payloads[0]) if n == 1 else sum(map(len, payloads))
            limit = self.spec.max_message_bytes
            if fullest + n <= self.spec.capacity and (
                size <= limit or max(map(len, payloads)) <= limit
            ):
                size += len(meta) * n if isinstance(meta, bytes) else sum(map(len, meta))
                lo = self.next_id
                hi = lo + n - 1
                self.next_id = hi + 1
                run = Run(lo, hi, payloads, 0, meta, size)
                if n == 1:
                    out.acks[writer].append([self.name, first])
                    if len(groups) == 1 and not groups[0].size and self._hand(groups[0], run, out):
                        return  # the lone message, straight to its one reader with credit
                else:
                    out.runs[writer].append((self.name, first, first + n - 1))
                for g in groups:
                    g.runs.append(run)
                    g.size += n
                self.counters.enqueued += n
                for g in groups:  # what _pump does, nothing being parked
                    if g.consumers:
                        self._dispatch(g, out)
                return
        each = [meta] * n if isinstance(meta, bytes) else meta
        items = [(first + i, p, m) for i, (p, m) in enumerate(zip(payloads, each, strict=True))]
        self.put_many(writer, items, out)

    def put_many(self, writer: bytes, items: Iterable[Sequence[Any]], out: Outbox) -> None:
        """A writer's batch of ``(seq, payload, meta)``, in order, one by one. Delivery runs
        once for the batch, and before any put that finds a buffer full (so that what credit
        can take leaves first): the outcome is the same as putting and delivering one by one."""
        limit = self.spec.max_message_bytes
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

    def _full(self) -> bool:
        cap = self.spec.capacity
        return any(g.size >= cap for g in self._groups)

    def _accept(
        self, writer: bytes, seq: int, payload: bytes, meta: bytes, out: Outbox, full: bool = True
    ) -> None:
        """Into every group's buffer, by the full-buffer policy; ``full=False``: the caller
        knows that no buffer is full (the common case: nothing to drop)."""
        msg_id = self.next_id
        cap = self.spec.capacity
        if full and self.spec.on_full is QueueOnFull.DROP_NEWEST:
            into = [g for g in self._groups if g.size < cap]
        else:
            into = self._groups
        if self.store is not None and into:  # on disk first: a failed write takes nothing in
            try:
                self.store.add(self.name, msg_id, payload, meta, [g.name for g in into])
            except Exception as exc:
                out.store_failed = f"the hub could not store the message: {exc}"
                self.counters.refused += 1
                out.ack(writer, self.name, seq, out.store_failed)
                return
        self.next_id += 1
        self.counters.dropped += len(self._groups) - len(into)
        run = Run(msg_id, msg_id, [payload], 0, meta, len(payload) + len(meta))
        for group in into:
            if group.size >= cap:  # dropOldest (block never gets here when full)
                old = _pop_oldest(group)
                self.counters.dropped += 1
                self._store_done(group.name, (old,), out)
            group.runs.append(run)
            group.size += 1
        self.counters.enqueued += 1
        out.ack(writer, self.name, seq)

    def _store_done(self, group: str, ids: Iterable[int], out: Outbox) -> None:
        """Forget messages on disk; a failure leaves them pending there (delivered again after
        a restart: at least once) and spoils the round's batch."""
        if self.store is None:
            return
        ids = list(ids)
        if not ids:
            return
        try:
            self.store.done(self.name, group, ids)
        except Exception as exc:
            out.store_failed = f"the hub could not store the message: {exc}"

    def _pump(self, out: Outbox) -> None:
        """Deliver what credit allows; let parked puts in as room appears; until neither can."""
        while True:
            for group in self._groups:
                if group.size and group.consumers:
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
        entry.credit = max(credit - entry.count, 0)
        self._pump(out)
        return None

    def acknowledge(self, consumer: bytes, loop: str, ids: Sequence[int], out: Outbox) -> None:
        """The consumer finished with these messages: forget them, and give it that credit."""
        self.acknowledge_runs(consumer, loop, _ranges(ids), out)

    def acknowledge_runs(
        self, consumer: bytes, loop: str, runs: Sequence[Sequence[int]], out: Outbox
    ) -> None:
        """:meth:`acknowledge` of the ids in runs [lo, hi] (ids the consumer does not hold
        are ignored; a run costs what the consumer holds, not its length)."""
        group = self.groups.get("*" if self.spec.mode is QueueMode.WORK else loop)
        entry = group.consumers.get(consumer) if group is not None else None
        if group is None or entry is None:
            return
        held = entry.held
        if len(runs) == 1:  # one run: most often exactly one delivered run
            lo, hi = runs[0]
            run = held.get(lo)
            if run is not None and run.hi == hi:
                del held[lo]
                done = [run]
            else:
                done = _take(entry, runs)
        else:
            done = _take(entry, runs)
        n = len(done) + sum([run.hi - run.lo for run in done])
        entry.count -= n
        if not entry.count:
            entry.longest = 1
        self.counters.acknowledged += n
        entry.credit += n  # whatever the store says: the consumer is free again
        if self.store is not None:
            self._store_done(group.name, (i for r in done for i in range(r.lo, r.hi + 1)), out)
        self._pump(out)

    def give_back(self, consumer: bytes, loop: str, ids: Sequence[int], out: Outbox) -> None:
        """The consumer gives these messages back unacknowledged (a batch whose iteration
        failed): to the front of the buffer, in order, for whichever consumer has credit
        (counted as redelivered); the consumer gets that credit back."""
        group = self.group_of(loop)
        entry = group.consumers.get(consumer) if group is not None else None
        if group is None or entry is None:
            return
        back = _take(entry, _ranges(ids))
        n = _back(group, back)
        entry.count -= n
        entry.credit += n
        self.counters.redelivered += n
        self._pump(out)

    def release(self, consumer: bytes, loop: str, out: Outbox) -> None:
        """A paused consumer (it has acknowledged all it took) gives back what it holds, to the
        front of the buffer for others, and takes no more until it subscribes again."""
        group = self.group_of(loop)
        entry = group.consumers.get(consumer) if group is not None else None
        if group is None or entry is None:
            return
        entry.credit = 0
        back = list(entry.held.values())
        entry.held.clear()
        entry.count = 0
        entry.longest = 1
        self.counters.redelivered += _back(group, back)
        self._pump(out)

    def lost(self, consumer: bytes, out: Outbox) -> int:
        """A consumer is gone: its unacknowledged messages go back for others. Returns how many."""
        back = 0
        for group in self._groups:
            entry = group.consumers.pop(consumer, None)
            if entry is None or not entry.held:
                continue
            back += _back(group, list(entry.held.values()))
        self.counters.redelivered += back
        self._pump(out)
        return back

    def _dispatch(self, group: Group, out: Outbox) -> None:
        """Deliver from the group's buffer what its consumers' credit takes: one consumer with
        credit takes a run of messages (whole runs, the last one cut at the credit); several
        take one message each in turn."""
        consumers = group.consumers
        if len(consumers) == 1:  # the common case: one reader replica
            for consumer in consumers.values():
                if consumer.credit > 0:
                    self._deliver(group, consumer, out)
            return
        ready = [c for c in consumers.values() if c.credit > 0]
        if len(ready) == 1:
            self._deliver(group, ready[0], out)
            return
        runs, deliveries, name = group.runs, out.deliveries, self.name
        while group.size and ready:
            if len(ready) == 1:  # one left with credit: the rest of its share at once
                self._deliver(group, ready[0], out)
                group.turn = 0
                return
            run = runs.popleft()  # its messages one by one, as long as two have credit
            lo, hi, payloads, start, meta, size, again = (
                run.lo,
                run.hi,
                run.payloads,
                run.start - run.lo,
                run.meta,
                run.size,
                run.again,
            )
            i = lo
            while i <= hi and len(ready) > 1:
                group.turn = turn = (group.turn + 1) % len(ready)
                consumer = ready[turn]
                one = run if lo == hi else Run(i, i, payloads, start + i, meta, size, again)
                consumer.held[i] = one
                deliveries[(consumer.identity, name)].append(one)
                consumer.count += 1
                consumer.credit -= 1
                if consumer.credit == 0:
                    ready.remove(consumer)
                i += 1
            if i <= hi:  # one consumer left with credit: the rest of the run waits first
                runs.appendleft(run.piece(i, hi))
            group.size -= i - lo
            self.counters.delivered += i - lo

    def _hand(self, group: Group, run: Run, out: Outbox) -> bool:
        """A message of one, to an empty buffer's group: to its consumer if it has only one
        and that one has credit (what putting it in the buffer and dispatching does)."""
        if len(group.consumers) != 1:
            return False
        for consumer in group.consumers.values():
            if consumer.credit <= 0:
                return False
            consumer.held[run.lo] = run
            out.deliveries[(consumer.identity, self.name)].append(run)
            consumer.credit -= 1
            consumer.count += 1
        self.counters.enqueued += 1
        self.counters.delivered += 1
        return True

    def _deliver(self, group: Group, consumer: Consumer, out: Outbox) -> None:
        """As much of the front of the buffer as ``consumer``'s credit takes, to it."""
        left = take = min(consumer.credit, group.size)
        runs, held = group.runs, consumer.held
        rows = out.deliveries[(consumer.identity, self.name)]
        while left:
            run = runs.popleft()
            n = run.hi - run.lo + 1
            if n > left:  # credit runs out inside this run: the rest stays first in line
                runs.appendleft(run.piece(run.lo + left, run.hi))
                run = run.piece(run.lo, run.lo + left - 1)
                n = left
            held[run.lo] = run
            rows.append(run)
            left -= n
            if n > consumer.longest:
                consumer.longest = n
        group.size -= take
        consumer.credit -= take
        consumer.count += take
        self.counters.delivered += take


def _pop_oldest(group: Group) -> int:
    """Drop the group's oldest waiting message; its id."""
    run = group.runs[0]
    if run.lo == run.hi:
        group.runs.popleft()
    else:
        group.runs[0] = run.piece(run.lo + 1, run.hi)
    group.size -= 1
    return run.lo


def _take(entry: Consumer, ranges: Sequence[Sequence[int]]) -> list[Run]:
    """Take the messages of runs [lo, hi] that ``entry`` holds out of its table: the pieces
    taken (``entry.count`` is the caller's to lower). A run held whole is looked up by its
    first id; a range that starts elsewhere looks up the numbers that may start a run it
    touches, or walks the runs held, whichever are fewer: it costs what it names or what is
    held, not more."""
    held = entry.held
    taken: list[Run] = []
    for lo, hi in ranges:
        while lo <= hi:
            run = held.get(lo)
            if run is None:  # lo is inside a run held, or not held: find the runs it touches
                longest = entry.longest
                if hi - lo + longest < len(held):  # by the numbers that may start one
                    found = [held.get(i) for i in range(lo - longest + 1, hi + 1)]
                    touched = [r for r in found if r is not None and r.hi >= lo]
                else:  # by the runs held
                    touched = [r for r in held.values() if r.lo <= hi and r.hi >= lo]
                for r in touched:
                    del held[r.lo]
                    a, b = max(lo, r.lo), min(hi, r.hi)
                    if r.lo < a:
                        held[r.lo] = r.kept(r.lo, a - 1)
                    if b < r.hi:
                        held[b + 1] = r.kept(b + 1, r.hi)
                    taken.append(r if a == r.lo and b == r.hi else r.piece(a, b))
                break
            del held[lo]
            if run.hi <= hi:
                taken.append(run)
            else:  # the range ends inside the run: the rest stays held
                held[hi + 1] = run.kept(hi + 1, run.hi)
                taken.append(run.piece(lo, hi))
            lo = run.hi + 1
    return taken


def _back(group: Group, runs: list[Run]) -> int:
    """Runs to the front of the group's buffer, in id order, marked redelivered; how many
    messages."""
    runs.sort(key=_first)
    n = 0
    for run in reversed(runs):
        group.runs.appendleft(run.given_back())
        n += run.hi - run.lo + 1
    group.size += n
    return n


def _first(run: Run) -> int:
    return run.lo


def _ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Ids as runs (lo, hi) of consecutive ones, ascending, each id once."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out
