"""Per-node overhead of the loop engine (bench/README.md, first benchmark).

A loop made of a producer (the built-in ``CounterProducer``, which counts to N and then raises
``ProducerExhausted``) and a chain of 10 no-op blocking nodes runs in each pool; its iteration
rate is compared with a plain Python loop that calls the same 11 functions directly (the same
``produce`` and the same 10 ``process`` methods of instances of the same classes), measured in
the same run, interleaved with the engine runs. Each case keeps the best of ``--repeat`` runs.

Run from the repository root::

    .venv/bin/python bench/node_overhead.py            # table
    .venv/bin/python bench/node_overhead.py --json     # machine-readable
    .venv/bin/python bench/node_overhead.py --check    # exit 1 when the 2 µs goal is missed

See bench/README.md for what each row measures and how it is timed.
"""

from __future__ import annotations

import os
import sys

# The process pool imports the node classes by path (``bench.node_overhead:NoOp``) in a child
# that gets this process's sys.path, so the repository root must be on it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from bench._harness import add_common_options, check_status, interleave, machine, select
from ostinato import (
    BlockingNode,
    LoopState,
    LoopStatus,
    NodeConfig,
    NodeData,
    ProducerExhausted,
    WorkflowOrchestrator,
    load_workflow,
)
from ostinato._engine._sampling import HISTOGRAMS_ENV
from ostinato._model._spec import Pool
from ostinato._observe._http import ObservabilityServer
from ostinato.lowlevel import LoopManager, WorkflowPlan

#: Blocking nodes in the chain; with the producer, node calls per iteration.
CHAIN_LENGTH = 10
CALLS_PER_ITERATION = CHAIN_LENGTH + 1
#: The issue's goal: the engine adds at most this much per node call in the thread pool.
GOAL_US_PER_CALL = 2.0
LOOP_NAME = "bench"
MODULE = "bench.node_overhead"
#: How long any single run may take before the benchmark gives up, seconds.
RUN_TIMEOUT = 900.0
#: How often the polled case looks at ``orchestrator.done``, seconds.
POLL_SECONDS = 0.005
#: How often a run with metrics on has its /metrics and /status read, seconds: as often as
#: the observability tests' Prometheus scrapes (Prometheus's own default is 60 s).
SCRAPE_SECONDS = 1.0


# -- the nodes under test --------------------------------------------------------------------------


class NoOp(BlockingNode[NodeConfig]):
    """Returns its input: the cheapest blocking node there is. A sync method, so in the asyncio
    pool the engine runs it in the loop's worker thread (the design's default)."""

    def process(self, data: NodeData) -> NodeData:
        return data


class InlineNoOp(NoOp):
    """The same no-op, declared quick and non-blocking: the asyncio pool calls it inline."""

    run_inline = True


class AsyncNoOp(BlockingNode[NodeConfig]):
    """The no-op written ``async def``: every pool awaits it on the loop's event loop."""

    async def process(self, data: NodeData) -> NodeData:
        return data


def workflow_document(pool: Pool, node_class: str, iterations: int) -> dict[str, Any]:
    """One loop: CounterProducer(count=iterations) then CHAIN_LENGTH nodes of ``node_class``."""
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "node-overhead"},
        "spec": {
            "loops": [
                {
                    "name": LOOP_NAME,
                    "pool": pool.value,
                    "producer": {
                        "name": "count",
                        "class": "CounterProducer",
                        "config": {"count": iterations},
                    },
                    "nodes": [
                        {"name": f"noop-{i}", "kind": "blocking", "class": f"{MODULE}:{node_class}"}
                        for i in range(CHAIN_LENGTH)
                    ],
                }
            ]
        },
    }


def make_plan(pool: Pool, node_class: str, iterations: int) -> WorkflowPlan:
    return load_workflow(workflow_document(pool, node_class, iterations))


# -- cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    #: The table's first two columns: where the loop runs, and how.
    pool: str
    variant: str
    #: "plain", "plain-async", "manager" (LoopManager.run_sync), "orchestrator" (start, then
    #: wait()) or "orchestrator-polled" (start, then poll ``done``).
    runner: str
    #: The pool in the workflow document (the plain loops build their nodes from it too).
    pool_spec: Pool
    node_class: str
    #: The key of the plain loop this case is compared with (None for the plain loops).
    peer: str | None
    #: What the timer covers.
    timed: str
    #: Iterations per run as a multiple of ``--iterations``, so that each run takes about as
    #: long as the others (the rows differ in speed by 1000x).
    scale: float = 1.0
    #: Metrics on: duration histograms sampled by the engine and, for the orchestrated rows,
    #: the HTTP server scraped every SCRAPE_SECONDS. Off: OSTINATO_HISTOGRAMS=off, no server.
    metrics: bool = True


CASES: tuple[Case, ...] = (
    Case(
        "plain",
        "plain",
        "sync functions (peer)",
        "plain",
        Pool.THREAD,
        "NoOp",
        None,
        "the while loop alone",
        scale=2.0,
    ),
    Case(
        "thread-manager",
        "thread",
        "LoopManager.run_sync",
        "manager",
        Pool.THREAD,
        "NoOp",
        "plain",
        "run_sync() in this thread: asyncio.run, setup, the iterations, drain, teardown",
    ),
    Case(
        "thread",
        "thread",
        "WorkflowOrchestrator",
        "orchestrator",
        Pool.THREAD,
        "NoOp",
        "plain",
        "start() until wait() returns: thread start, setup, the iterations, teardown",
    ),
    Case(
        "thread-polled",
        "thread",
        "orchestrator, done polled",
        "orchestrator-polled",
        Pool.THREAD,
        "NoOp",
        "plain",
        "start() until orchestrator.done, polled every 5 ms, instead of wait()",
    ),
    Case(
        "process",
        "process",
        "WorkflowOrchestrator",
        "orchestrator",
        Pool.PROCESS,
        "NoOp",
        "plain",
        "parent sees the loop running until it sees it stopped (child start-up not counted)",
    ),
    Case(
        "asyncio-inline",
        "asyncio",
        "sync, run_inline=True",
        "orchestrator",
        Pool.ASYNCIO,
        "InlineNoOp",
        "plain",
        "start() until wait() returns",
        scale=0.25,
    ),
    Case(
        "plain-async",
        "plain",
        "async def, awaited (peer)",
        "plain-async",
        Pool.ASYNCIO,
        "AsyncNoOp",
        None,
        "the loop inside one coroutine, each node awaited",
        scale=2.0,
    ),
    Case(
        "asyncio-async",
        "asyncio",
        "async def",
        "orchestrator",
        Pool.ASYNCIO,
        "AsyncNoOp",
        "plain-async",
        "start() until wait() returns",
        scale=0.25,
    ),
    Case(
        "asyncio-offload",
        "asyncio",
        "sync, offloaded (default)",
        "orchestrator",
        Pool.ASYNCIO,
        "NoOp",
        "plain",
        "start() until wait() returns; every node call hops to the worker thread and back",
        scale=0.005,
    ),
)


@dataclass(slots=True)
class Run:
    iterations: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


# -- the plain peers -----------------------------------------------------------------------------


def _instances(plan: WorkflowPlan) -> tuple[Callable[[], Any], list[Callable[[Any], Any]]]:
    """The producer's ``produce`` and the chain's ``process`` methods, of set-up instances of the
    very classes the engine runs (resolved by the same plan)."""
    loop = plan.loop(LOOP_NAME)
    producer = loop.producer.cls(loop.producer.config)
    producer.setup()
    chain = [n.cls(n.config) for n in loop.chain]
    for node in chain:
        node.setup()
    return producer.produce, [node.process for node in chain]  # type: ignore[attr-defined]


def run_plain(case: Case, iterations: int) -> Run:
    produce, chain = _instances(make_plan(case.pool_spec, case.node_class, iterations))
    done = 0
    start = time.perf_counter()
    try:
        while True:
            data = produce()
            for process in chain:
                data = process(data)
            done += 1
    except ProducerExhausted:
        pass
    return Run(done, time.perf_counter() - start)


def run_plain_async(case: Case, iterations: int) -> Run:
    produce, chain = _instances(make_plan(case.pool_spec, case.node_class, iterations))

    async def main() -> Run:
        done = 0
        start = time.perf_counter()
        try:
            while True:
                data = produce()
                for process in chain:
                    data = await process(data)
                done += 1
        except ProducerExhausted:
            pass
        return Run(done, time.perf_counter() - start)

    return asyncio.run(main())


# -- the engine ------------------------------------------------------------------------------------


def run_manager(case: Case, iterations: int) -> Run:
    """LoopManager alone, in this thread: the engine without the orchestrator around it.

    Also records when the loop reported ``running`` and ``stopping`` (via ``on_change``), which
    brackets the iterations alone; reported in the JSON as ``iterate_seconds``.
    """
    plan = make_plan(case.pool_spec, case.node_class, iterations)
    marks: dict[LoopState, float] = {}

    def on_change(manager: LoopManager) -> None:
        marks.setdefault(manager.state, time.perf_counter())

    manager = LoopManager(
        plan.loop(LOOP_NAME), workflow=plan.name, pool=case.pool_spec, on_change=on_change
    )
    start = time.perf_counter()
    manager.run_sync()
    seconds = time.perf_counter() - start
    _check(manager.status(), iterations)
    iterate = marks[LoopState.STOPPING] - marks[LoopState.RUNNING]
    return Run(manager.iterations, seconds, {"iterate_seconds": iterate})


@contextlib.contextmanager
def histograms(on: bool) -> Iterator[None]:
    """OSTINATO_HISTOGRAMS for the run: the engine reads it, process loops inherit it."""
    before = os.environ.get(HISTOGRAMS_ENV)
    os.environ[HISTOGRAMS_ENV] = "on" if on else "off"
    try:
        yield
    finally:
        if before is None:
            del os.environ[HISTOGRAMS_ENV]
        else:
            os.environ[HISTOGRAMS_ENV] = before


@contextlib.contextmanager
def observed(orchestrator: WorkflowOrchestrator, on: bool) -> Iterator[None]:
    """With metrics on: the workflow's HTTP server, and a thread reading /metrics and
    /status every SCRAPE_SECONDS (a Prometheus, and someone watching the status)."""
    if not on:
        yield
        return
    done = threading.Event()
    with ObservabilityServer(orchestrator, port=0) as server:

        def scrape() -> None:
            while not done.wait(SCRAPE_SECONDS):
                for path in ("/metrics", "/status"):
                    with urllib.request.urlopen(server.url + path, timeout=10) as reply:
                        reply.read()

        scraper = threading.Thread(target=scrape, name="bench-scraper", daemon=True)
        scraper.start()
        try:
            yield
        finally:
            done.set()
            scraper.join(timeout=15)


def run_orchestrator(case: Case, iterations: int) -> Run:
    plan = make_plan(case.pool_spec, case.node_class, iterations)
    orchestrator = WorkflowOrchestrator(plan)
    with observed(orchestrator, case.metrics):
        return _run_orchestrator(case, orchestrator, iterations)


def _run_orchestrator(case: Case, orchestrator: WorkflowOrchestrator, iterations: int) -> Run:
    if case.pool_spec is Pool.PROCESS:
        return _run_process(orchestrator, iterations)
    start = time.perf_counter()
    orchestrator.start()
    finished = orchestrator.wait(RUN_TIMEOUT)
    seconds = time.perf_counter() - start
    status = orchestrator.stop(timeout=30)
    if not finished:
        raise RuntimeError(f"{case.key}: the loop did not end within {RUN_TIMEOUT:g}s")
    loop = status.loop(LOOP_NAME)
    _check(loop, iterations)
    return Run(loop.iterations, seconds)


def run_orchestrator_polled(case: Case, iterations: int) -> Run:
    """As ``run_orchestrator`` but without wait(): this thread never registers as a watcher of
    the loop (a watcher is notified after every iteration), it polls ``done`` instead."""
    plan = make_plan(case.pool_spec, case.node_class, iterations)
    orchestrator = WorkflowOrchestrator(plan)
    with observed(orchestrator, case.metrics):
        return _run_polled(case, orchestrator, iterations)


def _run_polled(case: Case, orchestrator: WorkflowOrchestrator, iterations: int) -> Run:
    deadline = time.monotonic() + RUN_TIMEOUT
    start = time.perf_counter()
    orchestrator.start()
    while not orchestrator.done and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - start
    finished = orchestrator.done
    status = orchestrator.stop(timeout=30)
    if not finished:
        raise RuntimeError(f"{case.key}: the loop did not end within {RUN_TIMEOUT:g}s")
    loop = status.loop(LOOP_NAME)
    _check(loop, iterations)
    return Run(loop.iterations, seconds)


def _run_process(orchestrator: WorkflowOrchestrator, iterations: int) -> Run:
    """Time from the parent seeing ``running`` to it seeing ``stopped``.

    The child pushes a status message on every state change, so both marks lag the child's own
    transitions by one control-channel hop (well under a millisecond), and the lags cancel out
    to first order. Start-up (spawn, imports, handshake, setup) is outside; it is reported in
    the JSON as ``startup_seconds`` and the whole span as ``wall_seconds``.
    """
    marks: dict[str, float] = {}

    def watch(status: LoopStatus) -> bool:
        now = time.perf_counter()
        if status.state in (LoopState.RUNNING, LoopState.STOPPING):
            marks.setdefault("running", now)
        if status.state in (LoopState.STOPPED, LoopState.FINISHED, LoopState.ERROR):
            marks.setdefault("stopped", now)
            return True
        return False

    start = time.perf_counter()
    orchestrator.start()
    handle = orchestrator.loop(LOOP_NAME)  # handles exist once started; the child is not up yet
    watched = handle.wait_for(watch, RUN_TIMEOUT)
    finished = orchestrator.wait(30)
    status = orchestrator.stop(timeout=30)
    if not (watched and finished):
        raise RuntimeError(f"process: the loop did not end within {RUN_TIMEOUT:g}s")
    loop = status.loop(LOOP_NAME)
    _check(loop, iterations)
    if "running" not in marks:
        raise RuntimeError("process: the loop ended before it was seen running; more --iterations")
    seconds = marks["stopped"] - marks["running"]
    extra = {"startup_seconds": marks["running"] - start, "wall_seconds": marks["stopped"] - start}
    return Run(loop.iterations, seconds, extra)


def _check(status: LoopStatus, iterations: int) -> None:
    check_status(status, iterations)


RUNNERS: dict[str, Callable[[Case, int], Run]] = {
    "plain": run_plain,
    "plain-async": run_plain_async,
    "manager": run_manager,
    "orchestrator": run_orchestrator,
    "orchestrator-polled": run_orchestrator_polled,
}


# -- results -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    key: str
    pool: str
    variant: str
    peer: str | None
    timed: str
    iterations: int
    seconds: float
    iterations_per_second: float
    us_per_iteration: float
    us_per_node_call: float
    overhead_us_per_node_call: float | None = None
    #: Engine iterations/s ÷ the peer's (below 1: the engine is slower).
    rate_vs_peer: float | None = None
    #: Engine µs per iteration ÷ the peer's (how many times slower).
    slowdown_vs_peer: float | None = None
    #: µs per iteration of every run, in the order they ran; the row reports the best.
    runs_us_per_iteration: list[float] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)
    #: Metrics on (histograms, and the server scraped for orchestrated rows) or off.
    metrics: bool = True
    #: ``--metrics both``, rows with metrics on: 1 - iterations/s ÷ the same case's with
    #: metrics off (the share of throughput the metrics cost; negative: within noise).
    metrics_cost: float | None = None
    #: The same from CPU time (this process's, best run of each): less disturbed by other
    #: processes on a shared machine than the wall-clock rates. None for process rows, whose
    #: loop's CPU time is in the child.
    metrics_cpu_cost: float | None = None
    #: CPU µs per iteration, of the run with the least.
    cpu_us_per_iteration: float | None = None


def summarize(case: Case, runs: list[Run]) -> Row:
    best = min(runs, key=lambda r: r.seconds / r.iterations)
    us = best.seconds / best.iterations * 1e6
    return Row(
        key=case.key,
        pool=case.pool,
        variant=case.variant,
        peer=case.peer,
        timed=case.timed,
        iterations=best.iterations,
        seconds=best.seconds,
        iterations_per_second=best.iterations / best.seconds,
        us_per_iteration=us,
        us_per_node_call=us / CALLS_PER_ITERATION,
        runs_us_per_iteration=[round(r.seconds / r.iterations * 1e6, 3) for r in runs],
        cpu_us_per_iteration=min(
            (r.extra["cpu_seconds"] / r.iterations * 1e6 for r in runs if "cpu_seconds" in r.extra),
            default=None,
        ),
        extra={k: round(v, 6) for k, v in best.extra.items()},
        metrics=case.metrics,
    )


def compare(rows: dict[str, Row]) -> None:
    for row in rows.values():
        if row.peer is None or row.peer not in rows:
            continue
        peer = rows[row.peer]
        row.overhead_us_per_node_call = (
            row.us_per_iteration - peer.us_per_iteration
        ) / CALLS_PER_ITERATION
        row.rate_vs_peer = row.iterations_per_second / peer.iterations_per_second
        row.slowdown_vs_peer = row.us_per_iteration / peer.us_per_iteration
        off = rows.get(row.key + OFF)
        if row.metrics and off is not None:
            row.metrics_cost = 1 - row.iterations_per_second / off.iterations_per_second
            if row.pool != "process" and row.cpu_us_per_iteration and off.cpu_us_per_iteration:
                row.metrics_cpu_cost = 1 - off.cpu_us_per_iteration / row.cpu_us_per_iteration


def goal(rows: dict[str, Row]) -> dict[str, Any]:
    """The issue's goal, judged on the orchestrated thread-pool row (start, then wait())."""
    thread = rows.get("thread")
    if thread is None or thread.overhead_us_per_node_call is None:
        return {"goal_us_per_node_call": GOAL_US_PER_CALL, "met": None}
    measured = thread.overhead_us_per_node_call
    return {
        "goal_us_per_node_call": GOAL_US_PER_CALL,
        "case": "thread",
        "measured_us_per_node_call": round(measured, 3),
        "met": measured <= GOAL_US_PER_CALL,
    }


def print_table(rows: list[Row], args: argparse.Namespace, verdict: dict[str, Any]) -> None:
    print(
        f"ostinato node overhead: CounterProducer + {CHAIN_LENGTH} no-op blocking nodes "
        f"= {CALLS_PER_ITERATION} node calls per iteration"
    )
    print(
        f"Python {platform.python_version()} ({platform.machine()}), {os.cpu_count()} CPU(s), "
        f"best of {args.repeat} interleaved runs, --iterations {args.iterations:,}"
    )
    print()
    both = args.metrics == "both"
    columns = (
        f"{'pool':<8} {'variant':<26} {'metrics':<7} {'iterations':>10} {'iter/s':>11} "
        f"{'µs/iter':>9} {'µs/call':>8} {'overhead':>9} {'vs peer':>8}"
        + (f" {'cost':>7} {'cost':>7}" if both else "")
    )
    print(columns)
    print(
        f"{'':<8} {'':<26} {'':<7} {'':>10} {'':>11} {'':>9} {'':>8} {'µs/call':>9} "
        f"{'(it/s)':>8}" + (f" {'it/s':>7} {'cpu':>7}" if both else "")
    )
    print("-" * len(columns))
    for row in rows:
        over = row.overhead_us_per_node_call
        overhead = "—" if over is None else f"{over:.2f}"
        ratio = "—" if row.rate_vs_peer is None else f"{row.rate_vs_peer:.3f}"
        metrics = "—" if row.peer is None else ("on" if row.metrics else "off")
        cost = "" if row.metrics_cost is None else f" {row.metrics_cost:>7.1%}"
        if row.metrics_cost is not None:
            cpu = row.metrics_cpu_cost
            cost += f" {'—':>7}" if cpu is None else f" {cpu:>7.1%}"
        print(
            f"{row.pool:<8} {row.variant:<26} {metrics:<7} {row.iterations:>10,} "
            f"{row.iterations_per_second:>11,.0f} {row.us_per_iteration:>9.2f} "
            f"{row.us_per_node_call:>8.3f} {overhead:>9} {ratio:>8}{cost}"
        )
    print()
    print(f"µs/call   µs per iteration / {CALLS_PER_ITERATION} (the producer counts as a call)")
    print(f"overhead  (engine µs/iter - peer µs/iter) / {CALLS_PER_ITERATION}")
    print("vs peer   engine iterations/s ÷ peer iterations/s; the peer is the sync plain loop,")
    print("          for async def nodes the async plain loop")
    print("timing    perf_counter around each run, nothing subtracted; process: from the parent")
    print("          seeing the loop running to seeing it stopped, child start-up excluded")
    print("          (--json shows startup_seconds and wall_seconds)")
    print("metrics   on: duration histograms (sampled), and for orchestrated rows the HTTP")
    print(
        f"          server with /metrics and /status read every {SCRAPE_SECONDS:g} s; off: neither"
    )
    if both:
        print("cost      it/s: 1 - iter/s with metrics on ÷ iter/s of the same case with them off;")
        print("          cpu: 1 - CPU µs/iter off ÷ on, this process's CPU time (all its threads),")
        print("          the least of the runs: steadier than wall time on a shared machine")
    if verdict["met"] is not None:
        word = "met" if verdict["met"] else "MISSED"
        print(
            f"\ngoal: the thread pool adds at most {GOAL_US_PER_CALL:g} µs per node call: {word} "
            f"({verdict['measured_us_per_node_call']:.2f} µs, thread / WorkflowOrchestrator)"
        )


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/node_overhead.py",
        description="Per-node engine overhead: a producer and 10 no-op blocking nodes in each "
        "pool vs a plain Python loop calling the same functions.",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=200_000,
        help="iterations per run of the thread and process rows (default: %(default)s, 1-3 s "
        "on a 2-core machine); plain loops run 2x, asyncio rows 1/4, the offloaded asyncio row "
        "1/200 of it, so that every run takes about as long",
    )
    add_common_options(parser, [c.key for c in CASES], "its peer is")
    parser.add_argument(
        "--metrics",
        choices=["on", "off", "both"],
        default="on",
        help="on (default, as applications run): duration histograms, and the HTTP server "
        f"scraped every {SCRAPE_SECONDS:g} s for orchestrated rows; off: neither "
        f"({HISTOGRAMS_ENV}=off); both: every engine row twice, interleaved, with the cost",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 when the thread pool adds more than {GOAL_US_PER_CALL:g} µs "
        "per node call",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.repeat < 1:
        parser.error("--iterations and --repeat must be at least 1")
    return args


#: Key suffix of a case's twin with metrics off (``--metrics both``).
OFF = "/off"


def selected(only: list[str] | None, metrics: str = "on") -> list[Case]:
    """The cases to run; with ``metrics`` "both", each engine case is followed by its twin
    with metrics off (the plain peers have no metrics to turn off)."""
    cases = select(CASES, only, lambda c: c.key, lambda c: [c.peer] if c.peer else [])
    if metrics == "off":
        return [dataclasses.replace(c, metrics=False) for c in cases]
    if metrics == "both":
        return [
            twin
            for c in cases
            for twin in (
                [c]
                if c.peer is None
                else [
                    c,
                    dataclasses.replace(c, key=c.key + OFF, metrics=False),
                ]
            )
        ]
    return cases


def run_case(case: Case, iterations: int) -> Run:
    """One run, with the CPU time this process spent on it (every thread: the loop's, the
    waiting one's, the HTTP server's; not a process loop's child) in ``extra``."""
    with histograms(case.metrics):
        cpu = time.process_time()
        run = RUNNERS[case.runner](case, iterations)
        run.extra["cpu_seconds"] = time.process_time() - cpu
        return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = selected(args.only, args.metrics)

    def size(case: Case) -> int:
        return max(round(int(args.iterations) * case.scale), 1)

    runs = interleave(
        cases,
        args.repeat,
        lambda c: c.key,
        lambda c: run_case(c, size(c)),
        lambda c: f"{c.pool} {c.variant}, {size(c):,} iterations",
    )
    rows = {c.key: summarize(c, runs[c.key]) for c in cases}
    compare(rows)
    verdict = goal(rows)
    if args.json:
        document = {
            "benchmark": "node_overhead",
            **machine(),
            "node_calls_per_iteration": CALLS_PER_ITERATION,
            "iterations": args.iterations,
            "repeat": args.repeat,
            "metrics": args.metrics,
            "scrape_seconds": SCRAPE_SECONDS,
            "goal": verdict,
            "rows": [asdict(r) for r in rows.values()],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print_table(list(rows.values()), args, verdict)
    return 1 if args.check and verdict["met"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
