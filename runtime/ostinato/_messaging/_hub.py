"""The messaging hub: one ZeroMQ ROUTER that carries queues, control and state for a workflow."""

from __future__ import annotations

import itertools
import logging
import os
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from .._model._spec import QueueSpec
from .._model._status import QueueStatus
from . import _local
from ._channel import DATA_SUFFIX
from ._local import LocalLink
from ._mailbox import Mailbox
from ._queues import Outbox, QueueState, Run, Store
from ._wire import (
    BATCH_BYTES,
    TO_HUB,
    VERSION,
    Kind,
    batches,
    envelope,
    pack,
    parse,
    runs,
    shared,
)

if TYPE_CHECKING:
    from .._model._plan import WorkflowPlan
    from ._store import DurableStore

__all__ = ["Hub"]

log = logging.getLogger("ostinato.hub")
_ids = itertools.count()

Handler = Callable[[dict[str, Any]], None]

#: Frames handled before the hub commits, answers and looks at its mailbox again.
ROUND_FRAMES = 2000
# ZeroMQ constants as ints: pyzmq's flag enums cost a microsecond an operation.
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_NOBLOCK, _MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)
#: The longest the hub's thread sleeps between looks at the clock (lost peers), ms.
POLL_MS = 200
#: Heartbeat timeouts after which a silent peer is forgotten altogether.
FORGET_LOST = 5


class Hub:
    """Routes queue messages between loops and carries their control and state.

    One thread owns the sockets: a ROUTER bound to an ``inproc://`` endpoint (loops in this
    process) and an ``ipc://`` one (process loops), and optionally a second ROUTER on
    ``tcp://`` secured with CURVE (loops on other hosts). Other threads talk to it through a
    mailbox. Malformed frames are dropped, counted (``malformed``) and logged; the hub keeps
    serving. Consumers that stop sending heartbeats for ``lost_after`` seconds are lost: their
    unacknowledged messages go to other consumers.
    """

    def __init__(
        self,
        queues: Sequence[QueueSpec] = (),
        readers: Mapping[str, Sequence[str]] | None = None,
        *,
        ctx: zmq.Context[Any] | None = None,
        tcp: str | None = None,
        security: Any = None,
        store: Store | None = None,
        lost_after: float = 5.0,
    ) -> None:
        self.ctx: zmq.Context[Any] = ctx or zmq.Context.instance()
        self.id = os.urandom(8).hex()
        self._tmpdir = tempfile.mkdtemp(prefix="ostinato-")
        self.inproc = f"inproc://ostinato-hub-{os.getpid()}-{next(_ids)}"
        self._local = self.ctx.socket(zmq.ROUTER)
        self._setup(self._local)
        self._local.bind(self.inproc)
        self._local.bind(f"ipc://{self._tmpdir}/hub.sock")
        self.endpoint = self._local.get_string(zmq.LAST_ENDPOINT)
        self._remote: zmq.Socket[Any] | None = None
        self.tcp: str | None = None
        if tcp is not None:
            self._remote = self.ctx.socket(zmq.ROUTER)
            self._setup(self._remote)
            if security is not None:
                security.secure(self._remote)
            self._remote.bind(tcp)
            self.tcp = self._remote.get_string(zmq.LAST_ENDPOINT)
        readers = readers or {}
        self.store = store
        self.queues = {q.name: QueueState(q, readers.get(q.name, ()), store) for q in queues}
        self._lost_after = lost_after
        self._seen: dict[bytes, float] = {}
        self._route: dict[bytes, zmq.Socket[Any]] = {}
        self._consumers: dict[bytes, str] = {}  # identity -> loop, for peers that read queues
        #: Per writer and queue: its connection's epoch and the next sequence number this hub
        #: expects (see _in_order).
        self._writers: dict[bytes, dict[str, _Writer]] = {}
        self._lost: dict[bytes, float] = {}  # consumers declared lost, and when: told to
        # resubscribe if they come back, forgotten after FORGET_LOST heartbeat timeouts
        self._mailbox = Mailbox()
        self._handlers: dict[bytes, Handler] = {}
        #: Gets control and state messages of peers without a handler of their own (loops
        #: that connect to a hub running alone), with the peer's identity; hub thread.
        self.fallback: Callable[[bytes, dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        #: The queues' state, the peers' and the outbox: held by the hub's thread for each
        #: round, and by a loop of this process while its link hands the hub a frame.
        self._state = threading.Lock()
        #: Loops of this process linked without a socket (``link``), by data identity.
        self._links: dict[bytes, LocalLink] = {}
        #: Frames for socket peers that a linked loop's thread produced: only the hub's
        #: thread sends on sockets, first these, in order (under ``_state``).
        self._deferred: list[tuple[bytes, bytes, bytes]] = []
        self._thread_id = 0
        self._out = Outbox()
        self.malformed = 0
        self._closing = threading.Event()
        #: The store opened for this hub (:meth:`for_workflow`), closed with it.
        self._own_store: DurableStore | None = None
        self._thread = threading.Thread(target=self._serve, name="ostinato-hub", daemon=True)
        self._thread.start()
        _local.register(self.inproc, self)

    @classmethod
    def for_workflow(
        cls,
        plan: WorkflowPlan,
        *,
        state_dir: str | Path | None = None,
        ctx: zmq.Context[Any] | None = None,
        tcp: str | None = None,
        security: Any = None,
    ) -> Hub:
        """The hub of a workflow, for a local run and for ``ostinato hub`` alike: its queues,
        who reads each, a store for its durable queues (in ``state_dir``, by default
        :func:`default_state_dir`; closed with the hub) and when a silent consumer is lost
        (from its loops' heartbeats)."""
        queues = list(plan.queues.values())
        readers = {q: [lp.name for lp in plan.loops if q in lp.reads] for q in plan.queues}
        store: DurableStore | None = None
        if any(q.durable for q in queues):
            from ._store import DurableStore

            folder = Path(state_dir or default_state_dir(plan.name))
            folder.mkdir(parents=True, exist_ok=True)
            store = DurableStore(folder / "queues.db")
            log.info("durable queues kept in %s", folder / "queues.db")
        silence = lost_after([lp.spec.heartbeat_seconds for lp in plan.loops])
        try:
            hub = cls(
                queues,
                readers,
                ctx=ctx,
                tcp=tcp,
                security=security,
                store=store,
                lost_after=silence,
            )
        except BaseException:
            if store is not None:
                store.close()
            raise
        hub._own_store = store
        return hub

    @staticmethod
    def _setup(sock: zmq.Socket[Any]) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Credit bounds what is in flight; the high-water mark must never be what drops data.
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)

    # -- API for other threads -----------------------------------------------------------------

    def register(self, identity: bytes, handler: Handler) -> None:
        """Messages other than queue traffic from ``identity`` go to ``handler`` (hub thread)."""
        with self._lock:
            self._handlers[identity] = handler

    def unregister(self, identity: bytes) -> None:
        with self._lock:
            self._handlers.pop(identity, None)

    def send(self, identity: bytes, kind: str, **fields: Any) -> None:
        """Queue a message to a peer; dropped with a debug line if the peer is gone."""
        self._mailbox.put("send", identity, envelope(kind, **fields))

    def link(self, identity: bytes) -> LocalLink:
        """A data connection for a loop of this process, in place of a socket to
        :attr:`inproc` (see ``_local``)."""
        link = LocalLink(self, identity)
        with self._state:
            self._links[identity] = link
        return link

    def _unlink(self, link: LocalLink) -> None:
        with self._state:
            if self._links.get(link.identity) is link:
                del self._links[link.identity]

    def _local_frame(self, identity: bytes, msg: dict[str, Any]) -> None:
        """A linked loop's message, handled on its own thread as the hub's thread handles a
        socket's frame, and answered before this returns. No frame is made or checked: the
        message is this process's own, as an ``inproc://`` frame was (``trusted``)."""
        with self._state:
            if self._closing.is_set():
                return  # as a socket's frames to a hub that has gone
            try:
                self._arrived(identity, msg)
            except Exception as exc:  # whatever a frame holds, the hub keeps serving
                self._drop(identity, f"{type(exc).__name__}: {exc}")
            self._flush()

    def peer_gone(self, identity: bytes) -> None:
        """Tell the hub a peer has died (its process exited): redeliver its messages now."""
        self._mailbox.put("gone", identity)

    @property
    def lost_after(self) -> float:
        """Seconds of silence after which a consumer is lost."""
        return self._lost_after

    @property
    def alive(self) -> bool:
        """True while the hub's thread serves (it stops only on close, or on a bug)."""
        return self._thread.is_alive()

    def queue_status(self) -> dict[str, dict[str, int]]:
        """Depth and counters per queue (read without locking: a snapshot of ints)."""
        return {name: {"depth": q.depth, **vars_of(q.counters)} for name, q in self.queues.items()}

    def queue_statuses(self) -> list[QueueStatus]:
        """The same as :meth:`queue_status`, with each consumer's messages in flight, as the
        status models a WorkflowStatus holds."""
        return [
            QueueStatus(name=n, in_flight=self.queues[n].in_flight(), **counters)
            for n, counters in self.queue_status().items()
        ]

    # -- the hub thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        """Wait on the sockets' descriptors and the mailbox's pipe with one ``poll``, then
        read the sockets that have input. Not ``zmq_poll``, which asks every socket for its
        ``EVENTS`` before and after it waits (in libzmq each is a ``getpid`` and a ``poll``
        system call): a wake-up here costs one ``poll``, the reads, one ``EVENTS`` to know
        that a socket is empty, and one after sending (a send may take the edge of a
        socket's descriptor)."""
        sockets = [self._local] + ([self._remote] if self._remote is not None else [])
        waiter = select.poll()
        by_fd: dict[int, zmq.Socket[Any]] = {}
        for sock in sockets:
            by_fd[sock.FD] = sock
            waiter.register(sock.FD, select.POLLIN)
        mailbox = self._mailbox.receiver
        waiter.register(mailbox, select.POLLIN)
        next_check = time.monotonic() + self._lost_after / 2
        closing = self._closing.is_set
        ready = list(sockets)  # the first round looks at every socket
        state = self._state
        self._thread_id = threading.get_ident()
        try:
            while not closing():
                with state:  # linked loops (``link``) wait while a round runs
                    for sock in ready:
                        self._receive(sock)
                    now = time.monotonic()
                    if now >= next_check:
                        next_check = now + self._lost_after / 2
                        self._check_lost(now)
                    self._flush()
                # Input that arrived while this round ran, or whose edge a send took, is read
                # at once; the mailbox is looked at either way.
                ready = [sock for sock in sockets if _has_input(sock)]
                for fd, _ in waiter.poll(0 if ready else POLL_MS):
                    if fd == mailbox:
                        with state:
                            self._mailbox_round()
                    elif by_fd[fd] not in ready:
                        ready.append(by_fd[fd])
        except Exception:
            log.exception("hub thread failed")
            raise
        finally:
            for sock in sockets:
                sock.close(linger=0)
            self._mailbox.close()

    def _mailbox_round(self) -> None:
        for item in self._mailbox.take():
            if item[0] == "send":
                self._send(item[1], item[2])
            elif item[0] == "deferred":
                self._send_deferred()
            elif item[0] == "gone":
                self._lose(item[1], "its process exited", may_return=False)
                self._lose(item[1] + DATA_SUFFIX, "its process exited", may_return=False)

    def _send(self, identity: bytes, msg: dict[str, Any], *, via: bytes = b"") -> None:
        """Send ``msg`` to a peer: as it is on its link, or as a frame on the socket it (or
        peer ``via``) came in on; a socket's frame that a linked loop's thread sends waits for
        the hub's thread (``_deferred``). Under ``_state``."""
        link = self._links.get(identity)
        if link is not None:
            link.push(msg)
            return
        frame = pack(msg)
        if threading.get_ident() != self._thread_id:
            if not self._deferred:
                self._mailbox.put("deferred")
            self._deferred.append((identity, frame, via))
            return
        if self._deferred:  # they came first
            self._send_deferred()
        self._send_now(identity, frame, via)

    def _send_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for identity, frame, via in deferred:
            self._send_now(identity, frame, via)

    def _send_now(self, identity: bytes, frame: bytes, via: bytes) -> None:
        sock = self._route.get(via or identity, self._local)
        try:  # two sends, not send_multipart: half the cost, with int flags (no enum ops)
            sock.send(identity, _MORE)
            sock.send(frame, _NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer is gone
            log.debug("message to %r not sent: %s", identity, exc)

    def _receive(self, sock: zmq.Socket[Any]) -> None:
        """Handle what ``sock`` holds (its descriptor or ``EVENTS`` said it has input): a
        frame's identity, then its one body part. Not ``recv_multipart``, which asks the
        socket for RCVMORE after each part (2.5 µs more a frame); the body's ``more`` flag
        says the same for free."""
        recv = sock.recv
        events: Callable[[int], int] = sock.getsockopt  # type: ignore[assignment]  # EVENTS: int
        for i in range(ROUND_FRAMES):
            # The first read needs no asking (a read that finds the socket's pipe asleep
            # wakes it, as EVENTS would); after that, EVENTS before each read: a recv that
            # finds nothing raises zmq.Again, which costs more.
            if i and not events(_EVENTS) & _POLLIN:
                return
            try:
                head = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, body, parts = head.bytes, head, 1
            while body.more:  # one body part is a frame; more parts are read and dropped
                body = recv(_NOBLOCK, copy=False)
                parts += 1
            if parts != 2:
                self._drop(identity, f"{parts} frames, expected 2")
                continue
            try:
                msg = parse(body.bytes, TO_HUB)
                self._route[identity] = sock
                self._arrived(identity, msg)
            except Exception as exc:  # whatever a frame holds, the hub keeps serving
                self._drop(identity, f"{type(exc).__name__}: {exc}")

    def _arrived(self, identity: bytes, msg: dict[str, Any]) -> None:
        """A peer's message, from its socket or its link: the peer is alive (and told to
        subscribe again if it had been declared lost), and the message handled."""
        self._seen[identity] = time.monotonic()
        if identity in self._lost:
            del self._lost[identity]
            self._send(identity, envelope(Kind.RESUBSCRIBE))
        self._handle(identity, msg)

    def _handle(self, identity: bytes, msg: dict[str, Any]) -> None:
        """A message that ``parse`` checked: its fields have the types of its kind's shape."""
        kind = msg["t"]
        out = self._out
        if kind == Kind.PUTS:
            name, first, payloads, metas = msg["q"], msg["seq"], msg["payloads"], msg["metas"]
            queue = self.queues.get(name)
            if queue is not None:
                have = self._in_order(identity, name, first, len(payloads), msg)
                if have is None:
                    return  # out of order: the writer sends them again, after the missing ones
                index = msg.get("meta")
                if have:  # sent again, and here already: answered again, as the first time
                    refused = self._writers[identity][name].refused
                    for i in range(have):
                        out.ack(identity, name, first + i, refused.get(first + i))
                    if have == len(payloads):
                        return
                    first, payloads = first + have, payloads[have:]
                    if index is not None:
                        index = index[have:]
                    elif len(metas) > 1:
                        metas = metas[have:]
                # The payloads stay the bytes they came as, in the frame's own list: the hub
                # never looks inside them, and the run they are taken as keeps the list.
                queue.put_run(identity, first, payloads, metas, index, out)
            else:
                for i in range(len(payloads)):
                    out.ack(identity, name, first + i, f"no queue {name!r} in this workflow")
        elif kind == Kind.ACK:
            queue = self.queues.get(msg["q"])
            if queue is not None:
                queue.acknowledge_runs(identity, msg["loop"], msg["runs"], out)
        elif kind == Kind.GIVE_BACK:
            queue = self.queues.get(msg["q"])
            if queue is not None:
                queue.give_back(identity, msg["loop"], msg["ids"], out)
        elif kind == Kind.SUB:
            name, loop = msg["q"], msg["loop"]
            queue = self.queues.get(name)
            error = (
                f"no queue {name!r} in this workflow"
                if queue is None
                else queue.subscribe(identity, loop, msg["credit"], out)
            )
            if error is not None:
                self._send(identity, envelope(Kind.ERROR, q=name, error=error))
            else:
                self._consumers[identity] = loop
        elif kind == Kind.RELEASE:
            name = msg["q"]
            queue = self.queues.get(name)
            if queue is not None:
                queue.release(identity, msg["loop"], out)
            # What was sent before goes out before the answer: FIFO then tells the reader that
            # every delivery before 'released' is one the hub took back.
            self._flush()
            self._send(identity, envelope(Kind.RELEASED, q=name))
        elif kind == Kind.BYE:
            self._lose(identity, "it left", may_return=False)
        else:
            if kind == Kind.PING or kind == Kind.STATUS:
                # Heartbeats: the answer says which hub this is.
                self._send(identity, envelope(Kind.PONG, hub=self.id))
                self._data_alive(identity)
            with self._lock:
                handler = self._handlers.get(identity)
            if handler is None:
                fallback = self.fallback
                if fallback is not None:  # a hub alone: loops elsewhere report here
                    try:
                        fallback(identity, msg)
                    except Exception:
                        log.exception("message %r from %r not understood", kind, identity[:64])
                elif kind != Kind.PING:
                    log.debug("message %r from unregistered peer %r ignored", kind, identity)
                return
            try:
                handler(msg)
            except Exception:
                log.exception("handler for %r failed on %r", identity, kind)

    def _in_order(
        self, identity: bytes, queue: str, first: int, n: int, msg: dict[str, Any]
    ) -> int | None:
        """How many of a puts frame's first payloads this hub has already (sent again by the
        writer: 0 but after a rewind), or None when the frame does not follow what the hub has
        of this writer's queue (the hub restarted, or is new to the writer): then it asks the
        writer to send again from the first it misses, and takes nothing out of order. Every
        frame says the writer's oldest put not yet acknowledged (``since``): a hub that starts
        there has all of the writer's puts that matter."""
        states = self._writers.get(identity)
        if states is None:
            states = self._writers[identity] = {}
        state = states.get(queue)
        if state is None or state.epoch != msg["epoch"]:  # a writer (or a connection) new here
            since = msg["since"]
            if first != since:
                self._send(identity, envelope(Kind.REWIND, q=queue, seq=since))
                return None
            state = states[queue] = _Writer(msg["epoch"], first)
        expected = state.expected
        if first > expected:  # a gap: frames lost on the way (a reconnection)
            self._send(identity, envelope(Kind.REWIND, q=queue, seq=expected))
            return None
        if state.refused:  # the writer has settled what is older than its oldest unsettled
            since = msg["since"]
            for seq in [s for s in state.refused if s < since]:
                del state.refused[seq]
        state.expected = max(expected, first + n)
        return min(expected - first, n)

    def _data_alive(self, identity: bytes) -> None:
        """A connection's heartbeat also keeps its data socket (``_channel``) alive, which is
        silent while its loop has nothing to read or write, and brings it back if lost."""
        data = identity + DATA_SUFFIX
        if data in self._seen:
            self._seen[data] = time.monotonic()
        elif data in self._lost:
            del self._lost[data]
            self._send(data, envelope(Kind.RESUBSCRIBE), via=identity)

    def _lose(self, identity: bytes, why: str, *, may_return: bool = True) -> None:
        self._seen.pop(identity, None)
        self._route.pop(identity, None)
        if not may_return:  # gone for good (a lost writer keeps its place in the order)
            self._writers.pop(identity, None)
        if self._consumers.pop(identity, None) is None:
            return
        if may_return:
            self._lost[identity] = time.monotonic()
        back = sum(q.lost(identity, self._out) for q in self.queues.values())
        log.info("consumer %r lost (%s): %d message(s) back for redelivery", identity, why, back)

    def _check_lost(self, now: float) -> None:
        for identity in [
            i for i in self._consumers if now - self._seen.get(i, now) > self._lost_after
        ]:
            self._lose(identity, f"no heartbeat for {self._lost_after:g}s")
        # Peers that went without a goodbye (a writer's crashed process, a lost consumer that
        # never came back: a restarted process has a new identity) are forgotten in the end.
        forget = FORGET_LOST * self._lost_after
        for identity in [i for i, t in self._seen.items() if now - t > forget]:
            del self._seen[identity]
            self._route.pop(identity, None)
            self._writers.pop(identity, None)
        for identity in [i for i, t in self._lost.items() if now - t > forget]:
            del self._lost[identity]

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        if self.store is not None:
            try:
                self.store.commit()  # durable before any writer hears "acknowledged"
            except Exception as exc:
                out.store_failed = f"the hub could not store the message: {exc}"
            if out.store_failed is not None:  # the batch is gone: no durable put is stored
                log.error("durable store failed, refusing this round's puts: %s", out.store_failed)
                durable = {name for name, q in self.queues.items() if q.store is not None}
                for writer, items in out.acks.items():
                    for item in items:
                        if item[0] in durable and len(item) == 2:
                            item.append(out.store_failed)
                            out.refusals.append((writer, item[0], item[1], out.store_failed))
        for writer, queue, seq, error in out.refusals:  # refused again if sent again
            state = self._writers.get(writer, {}).get(queue)
            if state is not None:
                state.refused[seq] = error
        # Deliveries before acknowledgements: the reader is the one a message's latency waits
        # for, and whoever is woken first runs first (the GIL, or a core on a busy machine).
        for (consumer, queue), delivered in out.deliveries.items():
            for frame in _msgs(queue, delivered):
                self._send(consumer, frame)
        if out.runs:
            for writer in out.acks.keys() | out.runs.keys():
                for frame in _acks(out.acks.get(writer, []), out.runs.get(writer, [])):
                    self._send(writer, frame)
        else:
            for writer, items in out.acks.items():
                for frame in _acks(items):
                    self._send(writer, frame)
        out.clear()

    def _drop(self, identity: bytes, why: str) -> None:
        self.malformed += 1
        log.warning("dropped malformed frame from %r: %s", identity[:64], why)

    def close(self) -> None:
        _local.unregister(self.inproc)
        self._closing.set()
        self._mailbox.put("close")  # wakes the hub's thread now, not at its next timeout
        self._thread.join(timeout=5)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        with self._state:  # a linked loop's frame in hand is done with the store
            if self._own_store is not None:
                self._own_store.close()
                self._own_store = None


class _Writer:
    """What the hub knows of one writer's puts to one queue: its connection's epoch, the next
    sequence number it expects, and the refusals the writer may not have heard yet."""

    __slots__ = ("epoch", "expected", "refused")

    def __init__(self, epoch: int, expected: int) -> None:
        self.epoch = epoch
        self.expected = expected
        self.refused: dict[int, str] = {}


def _msgs(queue: str, delivered: list[Run]) -> list[dict[str, Any]]:
    """The runs delivered to a reader this round as msgs frames: one frame, each distinct meta
    once (the messages of one put run share their meta object), unless they hold more than
    BATCH_BYTES (then the frames of :func:`batches`)."""
    if len(delivered) == 1:
        run = delivered[0]
        lo, hi, meta = run.lo, run.hi, run.meta
        if lo == hi:  # the lone message
            if not isinstance(meta, bytes):
                meta = meta[run.start]
            msg = {
                "v": VERSION,
                "t": Kind.MSGS,
                "q": queue,
                "ids": [lo],
                "payloads": [run.payloads[run.start]],
                "metas": [meta],
            }
            if run.again:
                msg["redelivered"] = [0]
            return [msg]
        payloads = run.payload_list()
        index: list[int] | None = None
        if isinstance(meta, bytes):
            metas = [meta]
        elif type(meta) is list:  # one each, as the writer sent them
            metas = meta[run.start : run.start + hi - lo + 1]
        else:
            metas, index = shared(run.meta_list())
        again = list(range(hi - lo + 1)) if run.again else None
        ids = list(range(lo, hi + 1))
        size = run.size
    elif all([run.lo == run.hi for run in delivered]):  # lone messages (or one each in turn)
        ids = [run.lo for run in delivered]
        payloads = [run.payloads[run.start] for run in delivered]
        metas, index = shared(
            [r.meta if isinstance(r.meta, bytes) else r.meta[r.start] for r in delivered]
        )
        again = [i for i, run in enumerate(delivered) if run.again]
        size = sum([run.size for run in delivered])
    else:
        ids, payloads, metas, again = [], [], [], []
        index = []
        size = 0
        seen: dict[int, int] = {}  # id() of a meta sent in metas -> its index
        for run in delivered:
            meta, lo, n = run.meta, len(ids), run.hi - run.lo + 1
            size += run.size
            if run.again:
                again.extend(range(lo, lo + n))
            if n == 1:
                ids.append(run.lo)
                payloads.append(run.payloads[run.start])
            else:
                ids.extend(range(run.lo, run.hi + 1))
                payloads += run.payload_list()
            if isinstance(meta, bytes) or n == 1:
                if not isinstance(meta, bytes):
                    meta = meta[run.start]
                k = seen.get(id(meta))
                if k is None:
                    k = seen[id(meta)] = len(metas)
                    metas.append(meta)
                index += [k] * n
            elif type(meta) is list:  # one each
                index.extend(range(len(metas), len(metas) + n))
                metas += meta[run.start : run.start + n]
            else:
                for one in run.meta_list():
                    k = seen.get(id(one))
                    if k is None:
                        k = seen[id(one)] = len(metas)
                        metas.append(one)
                    index.append(k)
        if len(metas) == 1 or len(metas) == len(ids):  # all share one, or one each in order
            index = None
    # size is the runs' whole sizes: only a delivery that may not fit is measured.
    if size > BATCH_BYTES and sum(map(len, payloads)) + sum(map(len, metas)) > BATCH_BYTES:
        rows = [[m.id, m.payload, m.meta, m.redelivered] for r in delivered for m in r.messages()]
        return [_msgs_rows(queue, batch) for batch in batches(rows)]
    fields: dict[str, Any] = {}
    if index is not None:
        fields["meta"] = index
    if again:
        fields["redelivered"] = again
    return [envelope(Kind.MSGS, q=queue, ids=ids, payloads=payloads, metas=metas, **fields)]


def _msgs_rows(queue: str, rows: list[list[Any]]) -> dict[str, Any]:
    """Deliveries [id, payload, meta, redelivered] as one msgs frame."""
    metas, index = shared([row[2] for row in rows])
    fields: dict[str, Any] = {"meta": index} if index is not None else {}
    again = [i for i, row in enumerate(rows) if row[3]]
    if again:
        fields["redelivered"] = again
    return envelope(
        Kind.MSGS,
        q=queue,
        ids=[row[0] for row in rows],
        payloads=[row[1] for row in rows],
        metas=metas,
        **fields,
    )


def _acks(
    items: list[list[Any]], taken: Sequence[tuple[str, int, int]] = ()
) -> list[dict[str, Any]]:
    """A writer's acknowledgements [queue, seq], refusals [queue, seq, error] and runs taken
    in one go (queue, lo, hi), an acks frame per queue: the accepted as runs, the refused one
    by one."""
    if not taken and len(items) == 1 and len(items[0]) == 2:  # the lone message's
        queue, seq = items[0]
        return [{"v": VERSION, "t": Kind.ACKS, "q": queue, "runs": [[seq, seq]]}]
    frames = []
    accepted: dict[str, list[int]] = {}
    refused: dict[str, list[list[Any]]] = {}
    for item in items:
        if len(item) == 2:
            accepted.setdefault(item[0], []).append(item[1])
        else:
            refused.setdefault(item[0], []).append([item[1], item[2]])
    whole: dict[str, list[list[int]]] = {}
    for queue, lo, hi in taken:
        whole.setdefault(queue, []).append([lo, hi])
    for queue in dict.fromkeys([*accepted, *whole, *refused]):
        fields: dict[str, Any] = {}
        if queue in refused:
            fields["refused"] = refused[queue]
        found = runs(accepted.get(queue, ()))
        if queue in whole:
            found = _merged(found + whole[queue])
        frames.append(envelope(Kind.ACKS, q=queue, runs=found, **fields))
    return frames


def _merged(pairs: list[list[int]]) -> list[list[int]]:
    """Runs [lo, hi] in order, overlapping and adjacent ones made one."""
    if len(pairs) == 1:
        return pairs
    out: list[list[int]] = []
    for lo, hi in sorted(pairs):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def _has_input(sock: zmq.Socket[Any]) -> bool:
    return bool(sock.getsockopt(_EVENTS) & _POLLIN)  # type: ignore[operator]


def lost_after(heartbeats: Sequence[float]) -> float:
    """Silence after which a consumer is lost: three of the slowest heartbeats, at least 2 s,
    so that a busy machine does not look like a dead consumer (that would redeliver)."""
    return max(2.0, 3 * max(heartbeats, default=1.0))


def vars_of(counters: Any) -> dict[str, int]:
    return {name: getattr(counters, name) for name in counters.__slots__}


def default_state_dir(workflow: str) -> Path:
    """Where a local run keeps its durable queues: ``$XDG_STATE_HOME/ostinato/<workflow>``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "ostinato" / workflow
