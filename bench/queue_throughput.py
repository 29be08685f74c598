"""Cross-loop queues: throughput (bench/README.md, second benchmark; the round trip, the third, is
``bench/queue_latency.py``, which runs the round-trip cases of this module).

Throughput: a writer loop sends N bytes payloads (100 B, 1 KiB) through a broadcast queue of the
hub to a reader loop: both in the thread pool (``inproc://``), both in the process pool
(``ipc://``), or both in processes of their own started with ``ostinato loop`` against an
``ostinato hub`` over ``tcp://`` with CURVE (distributed mode). The writer is a blocking queue
node (waits for each acknowledgement) or a non-blocking one (``maxInFlight`` 256). The reader
loop's counting node notes ``perf_counter`` at the first and the last arrival; messages per
second = (N - 1) / (last - first). Peers, measured in the same run and interleaved with the
ostinato runs: raw pyzmq PUSH/PULL over the same transport (a thread pushing, this thread
pulling; or a child process pulling over ``ipc://``, or over ``tcp://`` with CURVE), and
``multiprocessing.Queue`` between two processes.

Round trip (``bench/queue_latency.py``): loop ``a`` stamps ``perf_counter_ns`` into its payload,
writes it to queue ``ping`` (blocking), and its blocking reader of queue ``pong`` takes the echo
that loop ``b`` (reader of ``ping`` as producer, blocking writer of ``pong``) sent back; the node
after that reader records the round trip. Peer: a raw pyzmq REQ/REP round trip over the same
transport with the same payload. Each case keeps the best of ``--repeat``.

Run from the repository root::

    .venv/bin/python bench/queue_throughput.py            # table (also: make bench)
    .venv/bin/python bench/queue_throughput.py --json     # machine-readable
    .venv/bin/python bench/queue_throughput.py --only tp-ipc-nonblocking-100

See bench/README.md ("Queues") for what each row measures and how it is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The process pool imports the node classes by path (``bench.queue_throughput:Count``) in a
# child that gets this process's sys.path, so the repository root must be on it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import zmq

from bench._harness import add_common_options, check_status, interleave, machine, select
from bench._transport import client_inproc
from ostinato import (
    BlockingNode,
    LoopState,
    LoopStatus,
    NodeConfig,
    NodeData,
    ProducerExhausted,
    ProducerNode,
    WorkflowOrchestrator,
    load_workflow,
)
from ostinato.lowlevel import LoopHandle

MODULE = "bench.queue_throughput"
ROOT = Path(__file__).resolve().parent.parent
#: Non-blocking writer: queue puts awaiting the hub's acknowledgement at once.
MAX_IN_FLIGHT = 256
#: Reader prefetch: messages the hub may deliver ahead of the reader loop taking them.
PREFETCH = 256
#: How long any single run may take before the benchmark gives up, seconds.
RUN_TIMEOUT = 300.0
#: How long a loop (a child process included) may take to start, seconds.
START_TIMEOUT = 60.0
#: How often the end of a run is polled, seconds.
POLL_SECONDS = 0.002
#: ``orchestrator.stop`` after the loops have stopped: only the hub connections close then.
STOP_TIMEOUT = 3.0
#: Round trips timed but left out of the percentiles (connections, caches, first allocations).
WARMUP = 100
SIZES = (100, 1024)
#: Payloads a message in the batched transport-alone row (``bench/_transport.py``), and a
#: batch of the split writer and batch reader rows.
BATCH = 64
#: The batch reader's maxWaitSeconds: long enough that every batch fills up (a run's batches
#: are all full, so each loop does ``n // BATCH`` iterations).
BATCH_WAIT_SECONDS = 1.0

_MP = multiprocessing.get_context("spawn")


# -- the nodes under test --------------------------------------------------------------------------


class PayloadConfig(NodeConfig):
    count: int
    size: int
    #: A file that must exist before the first payload: the benchmark creates it once the
    #: reading loop runs, so that the timed stream does not include a child's start-up.
    gate: str | None = None
    #: Put ``perf_counter_ns()`` into the first 8 bytes of each payload (round trips).
    stamp: bool = False
    #: Above 0: each payload is a list of this many (for a writer that splits it), and
    #: ``count`` counts lists.
    batch: int = 0


def _wait_for(path: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} not opened within {timeout:g}s")
        time.sleep(0.0005)


class Payloads(ProducerNode[PayloadConfig]):
    """``count`` bytes payloads of ``size`` bytes, then ``ProducerExhausted``: the
    ``CounterProducer`` of this benchmark (sync and quick, so called inline)."""

    run_inline = True

    def setup(self) -> None:
        self._left = self.config.count
        self._payload = b"x" * self.config.size
        self._pad = b"x" * max(self.config.size - 8, 0)
        self._gate = self.config.gate

    def produce(self) -> bytes:
        if self._left <= 0:
            raise ProducerExhausted
        if self._gate is not None:
            _wait_for(self._gate)  # once, before the first payload; blocks only this loop
            self._gate = None
        self._left -= 1
        if self.config.stamp:
            return time.perf_counter_ns().to_bytes(8, "little") + self._pad
        if self.config.batch:
            return [self._payload] * self.config.batch
        return self._payload


class CountConfig(NodeConfig):
    size: int
    #: The payload is a batch reader's list: count its items.
    batch: bool = False
    #: JSON file written at teardown: first and last arrival (perf_counter), counts.
    out: str


class Count(BlockingNode[CountConfig]):
    """Counts arrivals at the reader and notes the time of the first and of the last one."""

    run_inline = True

    def setup(self) -> None:
        self._seen = 0
        self._bad = 0
        self._first = self._last = 0.0

    def process(self, data: NodeData) -> NodeData:
        now = time.perf_counter()
        if not self._seen:
            self._first = now
        self._last = now
        size = self.config.size
        if self.config.batch:
            for payload in data.payload:
                if type(payload) is not bytes or len(payload) != size:
                    self._bad += 1
            self._seen += len(data.payload)
            return data
        self._seen += 1
        payload = data.payload
        if type(payload) is not bytes or len(payload) != size:
            self._bad += 1
        return data

    def teardown(self) -> None:
        Path(self.config.out).write_text(
            json.dumps(
                {"first": self._first, "last": self._last, "seen": self._seen, "bad": self._bad}
            )
        )


class MarkConfig(NodeConfig):
    #: A file created once the loop has set up (its readers have subscribed).
    ready: str


class Mark(BlockingNode[MarkConfig]):
    """Passes data on; its setup tells the benchmark that the loop is up (``ostinato loop``
    processes, where no orchestrator reports their state)."""

    run_inline = True

    def setup(self) -> None:
        Path(self.config.ready).touch()

    def process(self, data: NodeData) -> NodeData:
        return data


class LapConfig(NodeConfig):
    #: JSON file written at teardown: every round trip, nanoseconds, in order.
    out: str


class Lap(BlockingNode[LapConfig]):
    """After the ``pong`` reader: now minus the stamp the producer put in the payload."""

    run_inline = True

    def setup(self) -> None:
        self._laps: list[int] = []

    def process(self, data: NodeData) -> NodeData:
        now = time.perf_counter_ns()
        self._laps.append(now - int.from_bytes(data.payload[:8], "little"))
        return data

    def teardown(self) -> None:
        Path(self.config.out).write_text(json.dumps(self._laps))


def _document(name: str, queues: list[dict[str, Any]], loops: list[dict[str, Any]]) -> Any:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"queues": queues, "loops": loops},
    }


def throughput_document(
    pool: str,
    blocking: bool,
    n: int,
    size: int,
    gate: Path,
    out: Path,
    ready: Path | None = None,
    batch: int = 0,
) -> Any:
    """writer: Payloads → queue writer; reader: queue reader → [Mark →] Count; both in ``pool``.
    ``batch``: the writer puts lists of that many payloads (``split``), the reader takes
    batches of that many (a wait long enough that every batch is full), ``n // batch``
    iterations each."""
    reader_nodes: list[dict[str, Any]] = [
        {
            "name": "count",
            "kind": "blocking",
            "class": f"{MODULE}:Count",
            "config": {"size": size, "out": str(out), "batch": bool(batch)},
        }
    ]
    if ready is not None:
        reader_nodes.insert(0, _mark(ready))
    writer_node: dict[str, Any] = {"name": "out", "queue": {"write": "q", "split": bool(batch)}}
    if blocking:
        writer_node["kind"] = "blocking"
    else:
        writer_node.update(kind="nonBlocking", maxInFlight=MAX_IN_FLIGHT)
    read: dict[str, Any] = {"read": "q"}
    if batch:
        read["batch"] = {"maxMessages": batch, "maxWaitSeconds": BATCH_WAIT_SECONDS}
    iterations = n // batch if batch else n
    return _document(
        "queue-throughput",
        [{"name": "q", "mode": "broadcast", "capacity": max(n, 1000), "onFull": "block"}],
        [
            {
                "name": "writer",
                "pool": pool,
                "producer": {
                    "name": "payloads",
                    "class": f"{MODULE}:Payloads",
                    "config": {
                        "count": iterations,
                        "size": size,
                        "gate": str(gate),
                        "batch": batch,
                    },
                },
                "nodes": [writer_node],
            },
            {
                "name": "reader",
                "pool": pool,
                "maxIterations": iterations,
                "producer": {
                    "name": "in",
                    "queue": read,
                    "config": {"prefetch": PREFETCH},
                },
                "nodes": reader_nodes,
            },
        ],
    )


def _mark(ready: Path) -> dict[str, Any]:
    return {
        "name": "mark",
        "kind": "blocking",
        "class": f"{MODULE}:Mark",
        "config": {"ready": str(ready)},
    }


def round_trip_document(
    pool: str, n: int, size: int, gate: Path, out: Path, ready: Path | None = None
) -> Any:
    """a: Payloads(stamp) → write ping → read pong → Lap; b: read ping → [Mark →] write pong."""
    b_nodes: list[dict[str, Any]] = [
        {"name": "pong", "kind": "blocking", "queue": {"write": "pong"}}
    ]
    if ready is not None:
        b_nodes.insert(0, _mark(ready))
    return _document(
        "queue-round-trip",
        [
            {"name": "ping", "mode": "broadcast", "capacity": 1000},
            {"name": "pong", "mode": "broadcast", "capacity": 1000},
        ],
        [
            {
                "name": "a",
                "pool": pool,
                "producer": {
                    "name": "stamp",
                    "class": f"{MODULE}:Payloads",
                    "config": {"count": n, "size": size, "gate": str(gate), "stamp": True},
                },
                "nodes": [
                    {"name": "ping", "kind": "blocking", "queue": {"write": "ping"}},
                    {"name": "pong", "kind": "blocking", "queue": {"read": "pong"}},
                    {
                        "name": "lap",
                        "kind": "blocking",
                        "class": f"{MODULE}:Lap",
                        "config": {"out": str(out)},
                    },
                ],
            },
            {
                "name": "b",
                "pool": pool,
                "maxIterations": n,
                "producer": {"name": "ping", "queue": {"read": "ping"}},
                "nodes": b_nodes,
            },
        ],
    )


# -- cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    #: "throughput" or "round-trip": which table the row goes to.
    bench: str
    #: inproc (both loops in this process) or ipc (the reading loop in a child process).
    transport: str
    size: int
    #: "ostinato", "zmq" or "mp.Queue".
    system: str
    variant: str
    runner: str
    #: The keys of the peers this case is compared with (none for the peers themselves).
    peers: tuple[str, ...] = ()
    #: Messages (round trips) per run as a multiple of ``--messages``, so that every run takes
    #: a comparable time (the rows differ in speed by 100x).
    scale: float = 1.0


def _size_key(size: int) -> str:
    return f"{size // 1024}k" if size % 1024 == 0 else str(size)


#: Where the loops run, per transport: the table's wording.
WHERE = {
    "inproc": "thread loops",
    "ipc": "process loops",
    "tcp": "ostinato loop x2",
}
RTT_WHERE = {
    "inproc": "a thread ⇄ b thread",
    "ipc": "a process ⇄ b process",
    "tcp": "a ⇄ b, ostinato loop",
}
TRANSPORTS = ("inproc", "ipc", "tcp")
WRITERS = ("blocking", "nonblocking")


def _cases() -> tuple[Case, ...]:
    cases: list[Case] = []
    for transport in TRANSPORTS:
        for size in SIZES:
            s = _size_key(size)
            zmq_key = f"tp-{transport}-zmq-{s}"
            peers = (zmq_key, f"tp-mpqueue-{s}") if transport != "inproc" else (zmq_key,)
            where = WHERE[transport]
            curve = ", CURVE" if transport == "tcp" else ""
            cases.append(
                Case(
                    zmq_key,
                    "throughput",
                    transport,
                    size,
                    "zmq",
                    f"PUSH/PULL{curve} (peer)",
                    f"zmq-push-{transport}",
                    scale=5.0,
                )
            )
            if transport == "ipc":
                cases.append(
                    Case(
                        f"tp-mpqueue-{s}",
                        "throughput",
                        transport,
                        size,
                        "mp.Queue",
                        "2 processes (peer)",
                        "mp-queue",
                        scale=3.0,
                    )
                )
            cases.append(
                Case(
                    f"tp-{transport}-blocking-{s}",
                    "throughput",
                    transport,
                    size,
                    "ostinato",
                    f"blocking writer, {where}",
                    f"ostinato-{transport}-blocking",
                    peers,
                    scale=0.25,
                )
            )
            if transport == "inproc":
                cases.append(
                    Case(
                        f"tp-inproc-client-{s}",
                        "throughput",
                        transport,
                        size,
                        "ostinato",
                        "transport alone: hub + 2 clients, no loops",
                        "ostinato-client-inproc",
                        peers,
                        scale=2.5,
                    )
                )
                cases.append(
                    Case(
                        f"tp-inproc-client{BATCH}-{s}",
                        "throughput",
                        transport,
                        size,
                        "ostinato",
                        f"transport alone, {BATCH} payloads a message",
                        f"ostinato-client{BATCH}-inproc",
                        peers,
                        scale=25.0,
                    )
                )
            cases.append(
                Case(
                    f"tp-{transport}-nonblocking-{s}",
                    "throughput",
                    transport,
                    size,
                    "ostinato",
                    f"non-blocking writer ({MAX_IN_FLIGHT}), {where}",
                    f"ostinato-{transport}-nonblocking",
                    peers,
                )
            )
            cases.append(
                Case(
                    f"tp-{transport}-batch{BATCH}-{s}",
                    "throughput",
                    transport,
                    size,
                    "ostinato",
                    f"split writer, batch reader ({BATCH}), {where}",
                    f"ostinato-{transport}-batch",
                    peers,
                    scale=10.0,
                )
            )
    for transport in TRANSPORTS:
        for size in SIZES:
            s = _size_key(size)
            peer = f"rtt-{transport}-zmq-{s}"
            curve = ", CURVE" if transport == "tcp" else ""
            cases.append(
                Case(
                    peer,
                    "round-trip",
                    transport,
                    size,
                    "zmq",
                    f"REQ/REP{curve} (peer)",
                    f"zmq-reqrep-{transport}",
                    scale=5.0,
                )
            )
            cases.append(
                Case(
                    f"rtt-{transport}-{s}",
                    "round-trip",
                    transport,
                    size,
                    "ostinato",
                    RTT_WHERE[transport],
                    f"ostinato-rtt-{transport}",
                    (peer,),
                )
            )
    return tuple(cases)


CASES = _cases()


@dataclass(slots=True)
class Run:
    #: Messages delivered (throughput) or round trips timed (round trip).
    count: int
    #: First to last arrival (throughput), or the sum of the round trips.
    seconds: float
    #: Round trips in nanoseconds, warm-up left out (round-trip cases only).
    laps: list[int] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


# -- ostinato --------------------------------------------------------------------------------------


def _check(status: LoopStatus, iterations: int) -> None:
    check_status(status, iterations, clean_nodes=True)


def _orchestrate(document: Any, gate: Path, wait_loop: str, n: int) -> dict[str, float]:
    """Start the workflow, open the gate once ``wait_loop`` runs, wait for every loop to stop
    by itself, stop the workflow, check. Returns start-up and wall time (seconds).

    The end is seen by polling each loop's state for ``stopped`` rather than with
    ``orchestrator.wait()``, which waits for every handle to be *finished*: up to 392448a a
    race when a thread loop closed its hub connection (``Mailbox.put`` on a closed socket)
    left the handle unfinished for good, and ``wait()`` hung. Such handles are counted
    (``unfinished_handles``) and reported.
    """
    orchestrator = WorkflowOrchestrator(load_workflow(document))
    start = time.perf_counter()
    orchestrator.start()
    try:
        handle = orchestrator.loop(wait_loop)
        up = handle.wait_for_state(
            LoopState.RUNNING, LoopState.STOPPING, LoopState.STOPPED, LoopState.ERROR,
            timeout=START_TIMEOUT,
        )  # fmt: skip
        if not up or handle.state is not LoopState.RUNNING:
            raise RuntimeError(f"loop {wait_loop!r} did not start: {handle.status()}")
        opened = time.perf_counter()
        gate.touch()
        ended = _wait_stopped(list(orchestrator.loops.values()), opened + RUN_TIMEOUT)
    finally:
        status = orchestrator.stop(timeout=STOP_TIMEOUT)
    if ended is None:
        raise RuntimeError(f"the loops did not end within {RUN_TIMEOUT:g}s")
    for loop in status.loops:
        _check(loop, n)
    for queue in status.queues:
        if queue.dropped or queue.refused:
            raise RuntimeError(
                f"queue {queue.name!r}: {queue.dropped} dropped, {queue.refused} refused"
            )
    unfinished = sum(not h.done for h in orchestrator.loops.values())
    return {
        "startup_seconds": opened - start,
        "wall_seconds": ended - opened,
        "unfinished_handles": float(unfinished),
    }


def _wait_stopped(handles: list[LoopHandle], deadline: float) -> float | None:
    """Poll until every loop reports stopped, finished (its producer or its iteration limit
    ended it) or error; when, or None at the deadline."""
    ended = (LoopState.STOPPED, LoopState.FINISHED, LoopState.ERROR)
    while time.perf_counter() < deadline:
        if all(h.state in ended for h in handles):
            return time.perf_counter()
        time.sleep(POLL_SECONDS)
    return None


#: ``ostinato hub`` and ``ostinato loop`` log warnings and errors only (stderr).
QUIET = ("--log-level", "WARNING")


def _ostinato(*args: str) -> list[str]:
    return [sys.executable, "-m", "ostinato", *args]


def _distributed(document: Any, tmp: str, gate: Path, ready: Path, first: str, then: str) -> Any:
    """Distributed mode over ``tcp://`` with CURVE: ``ostinato hub`` on a free loopback port,
    then ``ostinato loop`` for ``first`` (the reading side) and ``then``; opens the gate once
    ``first`` has set up (``ready``), waits for both loops to end, stops the hub. Returns the
    start-up and wall time (seconds)."""
    wf, keys = Path(tmp, "wf.yaml"), Path(tmp, "wf.keys")
    wf.write_text(json.dumps(document))  # JSON is YAML
    subprocess.run(_ostinato("keys", "--out", str(keys)), check=True, timeout=START_TIMEOUT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    start = time.perf_counter()
    hub = subprocess.Popen(
        _ostinato("hub", str(wf), "--bind", "tcp://127.0.0.1:0", "--keys", str(keys), *QUIET),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    loops: list[subprocess.Popen[bytes]] = []
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()
        if not line.startswith("hub listening on "):
            raise RuntimeError(f"ostinato hub did not start: {line!r}")
        address = line.split()[-1]
        for loop in (first, then):
            command = ("loop", str(wf), "--loop", loop, "--hub", address, "--keys", str(keys))
            loops.append(subprocess.Popen(_ostinato(*command, *QUIET), **quiet))  # type: ignore[call-overload]
        _wait_for(str(ready))
        opened = time.perf_counter()
        gate.touch()
        codes = [p.wait(RUN_TIMEOUT) for p in loops]
        ended = time.perf_counter()
        if codes != [0, 0]:
            raise RuntimeError(f"ostinato loop {first}, {then} exited with {codes}")
    finally:
        for proc in loops:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(STOP_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
    return {"startup_seconds": opened - start, "wall_seconds": ended - opened}


def run_ostinato_throughput(case: Case, n: int) -> Run:
    pool = "thread" if case.transport == "inproc" else "process"
    blocking = case.runner.endswith("-blocking")
    batch = BATCH if case.runner.endswith("-batch") else 0
    if batch:
        n -= n % batch
    iterations = n // batch if batch else n
    with tempfile.TemporaryDirectory(prefix="ostinato-bench-") as tmp:
        gate, out, ready = Path(tmp, "gate"), Path(tmp, "reader.json"), Path(tmp, "ready")
        if case.transport == "tcp":
            doc = throughput_document("thread", blocking, n, case.size, gate, out, ready, batch)
            extra = _distributed(doc, tmp, gate, ready, "reader", "writer")
        else:
            doc = throughput_document(pool, blocking, n, case.size, gate, out, batch=batch)
            extra = _orchestrate(doc, gate, "reader", iterations)
        seen = json.loads(out.read_text())
    if seen["seen"] != n or seen["bad"]:
        raise RuntimeError(f"{case.key}: reader saw {seen['seen']}/{n}, {seen['bad']} malformed")
    # Payloads from the first batch's arrival to the last's: the first batch's are not timed.
    timed = (iterations - 1) * batch + 1 if batch else n
    return Run(timed, seen["last"] - seen["first"], extra=extra)


def run_ostinato_round_trip(case: Case, n: int) -> Run:
    pool = "thread" if case.transport == "inproc" else "process"
    total = n + WARMUP
    with tempfile.TemporaryDirectory(prefix="ostinato-bench-") as tmp:
        gate, out, ready = Path(tmp, "gate"), Path(tmp, "laps.json"), Path(tmp, "ready")
        if case.transport == "tcp":
            doc = round_trip_document("thread", total, case.size, gate, out, ready)
            extra = _distributed(doc, tmp, gate, ready, "b", "a")
        else:
            doc = round_trip_document(pool, total, case.size, gate, out)
            extra = _orchestrate(doc, gate, "b", total)
        laps: list[int] = json.loads(out.read_text())
    if len(laps) != total:
        raise RuntimeError(f"{case.key}: {len(laps)}/{total} round trips recorded")
    laps = laps[WARMUP:]
    return Run(n, sum(laps) / 1e9, laps, extra)


# -- raw pyzmq and multiprocessing peers -----------------------------------------------------------


def _pull_and_time(recv: Callable[[], Any], n: int) -> tuple[float, float]:
    recv()
    first = time.perf_counter()
    for _ in range(n - 1):
        recv()
    return first, time.perf_counter()


def run_zmq_push_inproc(case: Case, n: int) -> Run:
    """A thread of this process pushes, this thread pulls: one context, ``inproc://``."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    address = f"inproc://bench-push-{uuid.uuid4().hex}"
    pull = ctx.socket(zmq.PULL)
    pull.bind(address)
    payload = b"x" * case.size

    def push_all() -> None:
        push = ctx.socket(zmq.PUSH)
        push.connect(address)
        send = push.send
        for _ in range(n):
            send(payload)
        push.close(linger=-1)

    pusher = threading.Thread(target=push_all, name="bench-push")
    pusher.start()
    try:
        first, last = _pull_and_time(pull.recv, n)
    finally:
        pusher.join()
        pull.close(linger=0)
    return Run(n, last - first)


#: A CURVE client's keys for a raw peer's child: (server public, client public, client secret).
ClientKeys = tuple[bytes, bytes, bytes] | None


def _curve_pair() -> tuple[tuple[bytes, bytes], ClientKeys]:
    """The raw peers' CURVE keys over tcp: (server public, server secret), the client's set."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return (server_public, server_secret), (server_public, client_public, client_secret)


def _bind_peer(
    sock: zmq.Socket[Any], transport: str, tmp: str, name: str
) -> tuple[str, ClientKeys]:
    """Bind a raw peer's socket: ``ipc://`` in ``tmp``, or loopback ``tcp://`` with CURVE (as
    ostinato's own tcp transport); returns the address and the keys a client needs."""
    if transport != "tcp":
        sock.bind(f"ipc://{tmp}/{name}.sock")
        return sock.get_string(zmq.LAST_ENDPOINT), None
    (public, secret), client = _curve_pair()
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.bind("tcp://127.0.0.1:0")
    return sock.get_string(zmq.LAST_ENDPOINT), client


def _connect_peer(sock: zmq.Socket[Any], address: str, keys: ClientKeys) -> None:
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys[0])
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[1])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys[2])
    sock.connect(address)


def _zmq_pull_child(address: str, n: int, conn: Connection, keys: ClientKeys = None) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    _connect_peer(pull, address, keys)
    conn.send("ready")
    first, last = _pull_and_time(pull.recv, n)
    conn.send((first, last))
    pull.close(linger=0)
    ctx.term()


def run_zmq_push_ipc(case: Case, n: int) -> Run:
    """This process pushes over ``ipc://`` (or ``tcp://`` with CURVE), a child process pulls."""
    with tempfile.TemporaryDirectory(prefix="ostinato-bench-") as tmp:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        address, keys = _bind_peer(push, case.transport, tmp, "push")
        parent, child = _MP.Pipe()
        proc = _MP.Process(target=_zmq_pull_child, args=(address, n, child, keys), daemon=True)
        proc.start()
        try:
            _expect(parent, "ready")
            payload = b"x" * case.size
            send = push.send
            for _ in range(n):
                send(payload)
            first, last = _result(parent)
        finally:
            push.close(linger=0)
            proc.join(30)
    return Run(n, last - first)


def _mp_queue_child(queue: Any, n: int, conn: Connection) -> None:
    conn.send("ready")
    first, last = _pull_and_time(queue.get, n)
    conn.send((first, last))


def run_mp_queue(case: Case, n: int) -> Run:
    """``multiprocessing.Queue``: this process puts, a child process gets."""
    queue = _MP.Queue()
    parent, child = _MP.Pipe()
    proc = _MP.Process(target=_mp_queue_child, args=(queue, n, child), daemon=True)
    proc.start()
    try:
        _expect(parent, "ready")
        payload = b"x" * case.size
        put = queue.put
        for _ in range(n):
            put(payload)
        first, last = _result(parent)
    finally:
        proc.join(30)
        queue.close()
    return Run(n, last - first)


def _ping_pong(req: zmq.Socket[Any], n: int, size: int) -> list[int]:
    payload = b"x" * size
    send, recv, clock = req.send, req.recv, time.perf_counter_ns
    laps = []
    for _ in range(n + WARMUP):
        t0 = clock()
        send(payload)
        recv()
        laps.append(clock() - t0)
    return laps[WARMUP:]


def _echo(rep: zmq.Socket[Any], n: int) -> None:
    send, recv = rep.send, rep.recv
    for _ in range(n):
        send(recv())


def run_zmq_reqrep_inproc(case: Case, n: int) -> Run:
    ctx: zmq.Context[Any] = zmq.Context.instance()
    address = f"inproc://bench-rep-{uuid.uuid4().hex}"
    rep = ctx.socket(zmq.REP)
    rep.bind(address)
    echo = threading.Thread(target=_echo, args=(rep, n + WARMUP), name="bench-rep")
    echo.start()
    req = ctx.socket(zmq.REQ)
    req.connect(address)
    try:
        laps = _ping_pong(req, n, case.size)
    finally:
        echo.join()
        req.close(linger=0)
        rep.close(linger=0)
    return Run(n, sum(laps) / 1e9, laps)


def _zmq_rep_child(address: str, n: int, conn: Connection, keys: ClientKeys = None) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    rep = ctx.socket(zmq.REP)
    _connect_peer(rep, address, keys)
    conn.send("ready")
    _echo(rep, n)
    conn.send("done")
    rep.close(linger=0)
    ctx.term()


def run_zmq_reqrep_ipc(case: Case, n: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="ostinato-bench-") as tmp:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        req = ctx.socket(zmq.REQ)
        address, keys = _bind_peer(req, case.transport, tmp, "rep")
        parent, child = _MP.Pipe()
        proc = _MP.Process(
            target=_zmq_rep_child, args=(address, n + WARMUP, child, keys), daemon=True
        )
        proc.start()
        try:
            _expect(parent, "ready")
            laps = _ping_pong(req, n, case.size)
            _expect(parent, "done")
        finally:
            req.close(linger=0)
            proc.join(30)
    return Run(n, sum(laps) / 1e9, laps)


def _expect(conn: Connection, what: str) -> None:
    if not conn.poll(START_TIMEOUT) or conn.recv() != what:
        raise RuntimeError(f"the peer's child process did not say {what!r}")


def _result(conn: Connection) -> tuple[float, float]:
    if not conn.poll(RUN_TIMEOUT):
        raise RuntimeError("the peer's child process did not finish")
    first, last = conn.recv()
    return float(first), float(last)


def run_ostinato_client_inproc(case: Case, n: int) -> Run:
    """The queue transport without the loop engine (``bench/_transport.py``): the ceiling
    that the transport leaves the loops above it."""
    batch = BATCH if case.runner == f"ostinato-client{BATCH}-inproc" else 1
    first, last = client_inproc(n, case.size, batch)
    # Payloads from the first message's arrival to the last's: the first message's are not
    # timed (the rate is (count - 1) / seconds, as with one payload a message).
    return Run((n // batch - 1) * batch + 1, last - first)


RUNNERS: dict[str, Callable[[Case, int], Run]] = {
    "ostinato-client-inproc": run_ostinato_client_inproc,
    f"ostinato-client{BATCH}-inproc": run_ostinato_client_inproc,
    **{f"ostinato-{t}-{w}": run_ostinato_throughput for t in TRANSPORTS for w in WRITERS},
    **{f"ostinato-{t}-batch": run_ostinato_throughput for t in TRANSPORTS},
    **{f"ostinato-rtt-{t}": run_ostinato_round_trip for t in TRANSPORTS},
    "zmq-push-inproc": run_zmq_push_inproc,
    "zmq-push-ipc": run_zmq_push_ipc,
    "zmq-push-tcp": run_zmq_push_ipc,
    "mp-queue": run_mp_queue,
    "zmq-reqrep-inproc": run_zmq_reqrep_inproc,
    "zmq-reqrep-ipc": run_zmq_reqrep_ipc,
    "zmq-reqrep-tcp": run_zmq_reqrep_ipc,
}


# -- results -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    key: str
    bench: str
    transport: str
    size: int
    system: str
    variant: str
    peers: list[str]
    count: int
    seconds: float
    #: Throughput: messages/s at the reader. Round trip: round trips/s (1 / mean).
    per_second: float
    #: Throughput only: payload bytes/s at the reader, MB (1e6 bytes).
    megabytes_per_second: float | None = None
    #: Round trip only, µs.
    p50_us: float | None = None
    p99_us: float | None = None
    mean_us: float | None = None
    #: Throughput: rate ÷ the peer's rate (below 1: slower). Round trip: p50 ÷ the peer's p50
    #: and p99 ÷ the peer's p99 (above 1: slower). Keyed by peer.
    vs_peer: dict[str, float] = field(default_factory=dict)
    vs_peer_p99: dict[str, float] = field(default_factory=dict)
    #: Every run, in the order they ran: messages/s (throughput) or p50 µs (round trip).
    runs: list[float] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def _percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, µs."""
    rank = max(min(round(q / 100 * len(sorted_ns) + 0.5) - 1, len(sorted_ns) - 1), 0)
    return sorted_ns[rank] / 1000


def summarize(case: Case, runs: list[Run]) -> Row:
    row = Row(
        key=case.key,
        bench=case.bench,
        transport=case.transport,
        size=case.size,
        system=case.system,
        variant=case.variant,
        peers=list(case.peers),
        count=0,
        seconds=0.0,
        per_second=0.0,
    )
    if case.bench == "throughput":
        rates = [(r.count - 1) / r.seconds for r in runs]
        best = runs[rates.index(max(rates))]
        row.per_second = max(rates)
        row.megabytes_per_second = row.per_second * case.size / 1e6
        row.runs = [round(x, 1) for x in rates]
    else:
        p50s = [_percentile(sorted(r.laps), 50) for r in runs]
        best = runs[p50s.index(min(p50s))]
        laps = sorted(best.laps)
        row.p50_us = _percentile(laps, 50)
        row.p99_us = _percentile(laps, 99)
        row.mean_us = statistics.fmean(laps) / 1000
        row.per_second = 1e6 / row.mean_us
        row.runs = [round(x, 2) for x in p50s]
    row.count = best.count
    row.seconds = best.seconds
    row.extra = {k: round(v, 6) for k, v in best.extra.items()}
    return row


def compare(rows: dict[str, Row]) -> None:
    for row in rows.values():
        for key in row.peers:
            peer = rows.get(key)
            if peer is None:
                continue
            if row.bench == "throughput":
                row.vs_peer[key] = row.per_second / peer.per_second
            else:
                row.vs_peer[key] = (row.p50_us or 0.0) / (peer.p50_us or 1.0)
                row.vs_peer_p99[key] = (row.p99_us or 0.0) / (peer.p99_us or 1.0)


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def _ratio(row: Row, system: str, rows: dict[str, Row], p99: bool = False) -> str:
    for key in row.peers:
        if key in rows and rows[key].system == system:
            value = (row.vs_peer_p99 if p99 else row.vs_peer).get(key)
            if value is not None:
                return f"{value:.3g}" if row.bench == "throughput" else f"{value:.1f}x"
    return "—"


def print_tables(rows: dict[str, Row], args: argparse.Namespace, unfinished: int) -> None:
    throughput = [r for r in rows.values() if r.bench == "throughput"]
    latency = [r for r in rows.values() if r.bench == "round-trip"]
    what = "throughput" if throughput else "round-trip latency"
    count = f"--messages {args.messages:,}" if throughput else f"--trips {args.messages:,}"
    print(f"ostinato cross-loop queues: {what}")
    print(
        f"Python {platform.python_version()} ({platform.machine()}), {os.cpu_count()} CPU(s), "
        f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}), best of {args.repeat} "
        f"interleaved runs, {count}"
    )
    if throughput:
        print()
        header = (
            f"{'transport':<9} {'size':>6}  {'system':<9} {'variant':<41} {'messages':>8} "
            f"{'msg/s':>10} {'MB/s':>7} {'vs zmq':>7} {'vs mp.Q':>7}"
        )
        print("Throughput: messages delivered per second at the reader")
        print(header)
        print("-" * len(header))
        for r in throughput:
            print(
                f"{r.transport:<9} {_size_label(r.size):>6}  {r.system:<9} {r.variant:<41} "
                f"{r.count:>8,} {r.per_second:>10,.0f} {r.megabytes_per_second or 0:>7.1f} "
                f"{_ratio(r, 'zmq', rows):>7} {_ratio(r, 'mp.Queue', rows):>7}"
            )
    if latency:
        print()
        header = (
            f"{'transport':<9} {'size':>6}  {'system':<9} {'variant':<22} {'trips':>6} "
            f"{'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8} {'p50 vs':>7} {'p99 vs':>7}"
        )
        print("Round trip: loop a → queue ping → loop b → queue pong → loop a")
        print(header)
        print("-" * len(header))
        for r in latency:
            print(
                f"{r.transport:<9} {_size_label(r.size):>6}  {r.system:<9} {r.variant:<22} "
                f"{r.count:>6,} {r.p50_us or 0:>8.1f} {r.p99_us or 0:>8.1f} {r.mean_us or 0:>8.1f} "
                f"{_ratio(r, 'zmq', rows):>7} {_ratio(r, 'zmq', rows, p99=True):>7}"
            )
    print()
    if throughput:
        print("msg/s     (messages - 1) / (last arrival - first arrival), timed at the reader")
        print("vs zmq    ostinato msg/s ÷ raw pyzmq PUSH/PULL msg/s, same transport and payload")
        print("vs mp.Q   ostinato msg/s ÷ multiprocessing.Queue msg/s between two processes")
        print(
            "alone     the hub and two hub clients without loops (bench/_transport.py); with "
            f"{BATCH} payloads a message, messages and msg/s count payloads"
        )
        print(
            f"split     a writer that puts lists of {BATCH} as {BATCH} messages (queue.split), a "
            f"reader that takes {BATCH} an iteration (queue.batch): msg/s counts payloads"
        )
    if latency:
        print("p50/p99   round trip in loop a, stamped by its producer, read after the pong reader")
        print("p50 vs    ostinato p50 ÷ raw pyzmq REQ/REP p50 (x times slower); p99 vs likewise")
    print("inproc    both loops threads of the orchestrator; ipc: both in process-pool children")
    print("tcp       ostinato hub + one ostinato loop process per loop, CURVE; raw peers CURVE too")
    if unfinished:
        print(
            f"\nnote: {unfinished} loop handle(s) stayed unfinished after their loop stopped "
            "(the hub-connection close race, see bench/README.md)"
        )


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None, bench: str) -> argparse.Namespace:
    if bench == "throughput":
        parser = argparse.ArgumentParser(
            prog="bench/queue_throughput.py",
            description="Cross-loop queue throughput vs raw pyzmq PUSH/PULL over the same "
            "transport and multiprocessing.Queue.",
        )
        parser.add_argument(
            "--messages",
            type=int,
            default=8_000,
            help="messages per run of the non-blocking writer rows (default: %(default)s); "
            "blocking writer rows run 1/4 of it, pyzmq PUSH/PULL 5x, multiprocessing.Queue 3x, "
            "so that runs take comparable time",
        )
    else:
        parser = argparse.ArgumentParser(
            prog="bench/queue_latency.py",
            description="Cross-loop round trip (two queues) vs raw pyzmq REQ/REP over the same "
            "transport.",
        )
        parser.add_argument(
            "--trips",
            dest="messages",
            type=int,
            default=800,
            help="timed round trips per ostinato run (default: %(default)s; REQ/REP: 5x); "
            f"{WARMUP} more run first, untimed",
        )
    keys = [c.key for c in CASES if c.bench == bench]
    add_common_options(parser, keys, "its peers are")
    args = parser.parse_args(argv)
    if args.messages < 2 or args.repeat < 1:
        parser.error("the count must be at least 2 and --repeat at least 1")
    return args


def selected(only: list[str] | None, bench: str) -> list[Case]:
    cases = [c for c in CASES if c.bench == bench]
    return select(cases, only, lambda c: c.key, lambda c: c.peers)


def main(argv: list[str] | None = None, bench: str = "throughput") -> int:
    """Run the ``bench`` ("throughput" or "round-trip") cases and print their table."""
    args = parse_args(argv, bench)
    cases = selected(args.only, bench)

    def size(case: Case) -> int:
        return max(round(int(args.messages) * case.scale), 2)

    runs = interleave(
        cases,
        args.repeat,
        lambda c: c.key,
        lambda c: RUNNERS[c.runner](c, size(c)),
        lambda c: f"{c.key} ({c.system}, {c.variant}), {size(c):,}",
    )
    rows = {c.key: summarize(c, runs[c.key]) for c in cases}
    compare(rows)
    unfinished = round(
        sum(
            r.extra.get("unfinished_handles", 0.0) for case_runs in runs.values() for r in case_runs
        )
    )
    if args.json:
        document = {
            "benchmark": "queue_throughput" if bench == "throughput" else "queue_latency",
            **machine(),
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
            "messages" if bench == "throughput" else "trips": args.messages,
            "repeat": args.repeat,
            "warmup_round_trips": WARMUP,
            "unfinished_handles": unfinished,
            "rows": [asdict(r) for r in rows.values()],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print_tables(rows, args, unfinished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
