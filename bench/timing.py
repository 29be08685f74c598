"""Timing precision of ``IntervalProducer`` loops (bench/README.md, "timing.py").

An ``IntervalProducer`` loop runs in each pool through the real ``WorkflowOrchestrator`` at
100 Hz, 1 kHz and 5 kHz; a recording node notes ``time.monotonic()`` at every tick. Beside
it, in the same run and interleaved with it, a plain Python loop sleeps to the same grid with
``time.sleep`` and notes the same. Per row: jitter (|interval - period|) and grid lateness
(tick time - due time), p50 and p99, missed ticks, achieved rate and the CPU the process used.

Run from the repository root::

    .venv/bin/python bench/timing.py                 # table
    .venv/bin/python bench/timing.py --json          # machine-readable
    .venv/bin/python bench/timing.py --check         # exit 1 when the 1 kHz goal is missed

See bench/README.md for what each row measures.
"""

from __future__ import annotations

import os
import sys

# The process pool imports the recording node by path (``bench.timing:Recorder``) in a child
# that gets this process's sys.path, so the repository root must be on it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import asyncio
import contextlib
import json
import math
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._harness import interleave, machine
from ostinato import (
    BlockingNode,
    LoopState,
    NodeConfig,
    NodeData,
    WorkflowOrchestrator,
    load_workflow,
)
from ostinato._engine._eventloop import PRECISE_TIMERS_ENV
from ostinato._engine._sampling import HISTOGRAMS_ENV

LOOP_NAME = "tick"
MODULE = "bench.timing"
RATES_HZ = (100, 1_000, 5_000)
#: Key suffix of a row's twin with the duration histograms off (``--histograms both``).
OFF = "/off"
#: Key suffix of a row's twin on asyncio's default timers (``--timers both``).
DEFAULT_TIMERS = "/default-timers"
POOLS = ("thread", "asyncio", "process")
#: The goal, at 1 kHz in every pool: p50 jitter within 2x the plain loop's plus 20 µs, p99
#: within 2x the plain loop's, and at most 5 percentage points of one CPU more than it.
GOAL_RATE_HZ = 1_000
GOAL_P50_FACTOR, GOAL_P50_SLACK_US = 2.0, 20.0
GOAL_P99_FACTOR = 2.0
GOAL_EXTRA_CPU_PERCENT = 5.0
#: How long a run may take beyond its schedule before the benchmark gives up, seconds.
RUN_MARGIN_SECONDS = 120.0
#: How often the benchmark's own thread looks whether the loop has ended, seconds. Polling
#: rather than ``orchestrator.wait()``: a waiting thread is woken by the loop up to once a
#: millisecond, which would count against the loop's CPU.
POLL_SECONDS = 0.05


# -- the recording node ----------------------------------------------------------------------------


class RecorderConfig(NodeConfig):
    path: str


class Recorder(BlockingNode[RecorderConfig]):
    """Notes the tick number and ``time.monotonic()`` of every iteration, and the process's CPU
    time at the first and the last; writes them as JSON to ``path`` at teardown (the same in
    every pool, a child process included: nothing crosses the wire but a file name).

    ``run_inline``: in the asyncio pool the note is taken on the event loop, right after the
    producer returned, not after a hop to the worker thread."""

    run_inline = True

    def setup(self) -> None:
        self.ticks: list[int] = []
        self.times: list[float] = []
        self.cpu_first = self.cpu_last = 0.0

    def process(self, data: NodeData) -> NodeData:
        now = time.monotonic()
        cpu = time.process_time()
        if not self.ticks:
            self.cpu_first = cpu
        self.cpu_last = cpu
        self.ticks.append(data.payload)
        self.times.append(now)
        return data

    def teardown(self) -> None:
        record = {
            "ticks": self.ticks,
            "times": self.times,
            "cpu": [self.cpu_first, self.cpu_last],
        }
        Path(self.config.path).write_text(json.dumps(record))


class OffloadedRecorder(Recorder):
    """The same recorder without ``run_inline``: in the asyncio pool its ``process`` runs in
    the loop's worker thread, so each note is taken after that hop (the asyncio pool's default
    for sync nodes; the producer's own wait is on the event loop either way)."""

    run_inline = False


def workflow_document(
    pool: str, rate_hz: int, count: int, path: str, recorder: str = "Recorder"
) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "timing"},
        "spec": {
            "loops": [
                {
                    "name": LOOP_NAME,
                    "pool": pool,
                    "producer": {
                        "name": "interval",
                        "class": "IntervalProducer",
                        "config": {"periodSeconds": 1.0 / rate_hz, "count": count},
                    },
                    "nodes": [
                        {
                            "name": "record",
                            "kind": "blocking",
                            "class": f"{MODULE}:{recorder}",
                            "config": {"path": path},
                        }
                    ],
                }
            ]
        },
    }


# -- cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    #: "plain" (the peer: time.sleep to the grid), "plain-asyncio" (asyncio.sleep to the grid
    #: on a bare event loop: what the event loop's timer gives), a pool, or
    #: "asyncio-offloaded" (the asyncio pool, the recorder a sync node run off the event loop).
    system: str
    rate_hz: int
    #: Duration histograms on (the default, as applications run) or off (OSTINATO_HISTOGRAMS).
    histograms: bool = True
    #: The runtime's precise timers (the default) or asyncio's own (OSTINATO_PRECISE_TIMERS).
    precise_timers: bool = True

    @property
    def peer(self) -> str | None:
        return None if self.system.startswith("plain") else f"plain-{self.rate_hz}"


def all_cases(
    rates: Sequence[int],
    pools: Sequence[str],
    asyncio_peer: bool,
    offloaded: bool,
    histograms: str = "on",
    timers: str = "precise",
) -> list[Case]:
    """Per rate: the plain peer(s), then each pool; with ``histograms`` "both" each pool row is
    followed by its twin with the histograms off (key suffix OFF), with ``timers`` "both" by
    its twin on asyncio's default timers (key suffix DEFAULT_TIMERS)."""
    cases = []
    hist = {"on": [True], "off": [False], "both": [True, False]}[histograms]
    precise = {"precise": [True], "default": [False], "both": [True, False]}[timers]
    for rate in rates:
        cases.append(Case(f"plain-{rate}", "plain", rate))
        if asyncio_peer:
            cases.append(Case(f"plain-asyncio-{rate}", "plain-asyncio", rate))
        systems = list(pools)
        if offloaded and "asyncio" in pools:
            systems.append("asyncio-offloaded")
        for system in systems:
            for timed in precise:
                for on in hist:
                    key = f"{system}-{rate}"
                    key += "" if on or len(hist) == 1 else OFF
                    key += "" if timed or len(precise) == 1 else DEFAULT_TIMERS
                    cases.append(Case(key, system, rate, histograms=on, precise_timers=timed))
    return cases


@dataclass(slots=True)
class Record:
    """What one run noted: tick numbers, their times (monotonic), CPU seconds over the span."""

    ticks: list[int]
    times: list[float]
    cpu_seconds: float
    count: int


# -- the plain peers -------------------------------------------------------------------------------


def run_plain(rate_hz: int, count: int) -> Record:
    """A while loop sleeping to the same grid as IntervalProducer (anchored at the first tick,
    late ticks skipped the same way), noting the same things as ``Recorder``."""
    period = 1.0 / rate_hz
    ticks: list[int] = []
    times: list[float] = []
    anchor = time.monotonic()
    tick = 0
    cpu_first = 0.0
    while tick < count:
        late = time.monotonic() - (anchor + tick * period)
        if late >= period:
            tick = min(tick + int(late // period), count - 1)
        delay = anchor + tick * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        cpu = time.process_time()
        if not ticks:
            cpu_first = cpu
        ticks.append(tick)
        times.append(now)
        tick += 1
    return Record(ticks, times, time.process_time() - cpu_first, count)


def run_plain_asyncio(rate_hz: int, count: int) -> Record:
    """The same loop on a bare asyncio event loop, waiting with ``asyncio.sleep``."""

    async def main() -> Record:
        period = 1.0 / rate_hz
        ticks: list[int] = []
        times: list[float] = []
        anchor = time.monotonic()
        tick = 0
        cpu_first = 0.0
        while tick < count:
            late = time.monotonic() - (anchor + tick * period)
            if late >= period:
                tick = min(tick + int(late // period), count - 1)
            await asyncio.sleep(max(anchor + tick * period - time.monotonic(), 0.0))
            now = time.monotonic()
            cpu = time.process_time()
            if not ticks:
                cpu_first = cpu
            ticks.append(tick)
            times.append(now)
            tick += 1
        return Record(ticks, times, time.process_time() - cpu_first, count)

    return asyncio.run(main())


# -- the engine ------------------------------------------------------------------------------------


def run_pool(pool: str, rate_hz: int, count: int, recorder: str = "Recorder") -> Record:
    with tempfile.TemporaryDirectory(prefix="ostinato-timing-") as folder:
        path = os.path.join(folder, "record.json")
        plan = load_workflow(workflow_document(pool, rate_hz, count, path, recorder))
        orchestrator = WorkflowOrchestrator(plan)
        deadline = time.monotonic() + count / rate_hz + RUN_MARGIN_SECONDS
        orchestrator.start()
        try:
            while not orchestrator.done and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
            finished = orchestrator.done
        finally:
            status = orchestrator.stop(timeout=30)
        loop = status.loop(LOOP_NAME)
        if not finished or loop.state not in (LoopState.FINISHED, LoopState.STOPPED):
            raise RuntimeError(
                f"{pool} {rate_hz} Hz: the loop ended {loop.state.value}: "
                f"{loop.last_error or loop.reason}"
            )
        if loop.failed_iterations:
            raise RuntimeError(f"{loop.failed_iterations} failed iteration(s): {loop.last_error}")
        record = json.loads(Path(path).read_text())
    cpu_first, cpu_last = record["cpu"]
    return Record(record["ticks"], record["times"], cpu_last - cpu_first, count)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables for the run: the engine reads them, process loops inherit them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def run_case(case: Case, seconds: float) -> Record:
    count = max(round(seconds * case.rate_hz), 3)
    if case.system == "plain":
        return run_plain(case.rate_hz, count)
    if case.system == "plain-asyncio":
        return run_plain_asyncio(case.rate_hz, count)
    settings = {
        HISTOGRAMS_ENV: "on" if case.histograms else "off",
        PRECISE_TIMERS_ENV: "on" if case.precise_timers else "off",
    }
    with environment(**settings):
        if case.system == "asyncio-offloaded":
            return run_pool("asyncio", case.rate_hz, count, "OffloadedRecorder")
        return run_pool(case.system, case.rate_hz, count)


# -- results ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(max(math.ceil(q / 100 * len(ordered)) - 1, 0), len(ordered) - 1)]


@dataclass(slots=True)
class Stats:
    jitter_p50_us: float
    jitter_p99_us: float
    late_p50_us: float
    late_p99_us: float
    late_max_us: float
    missed: int
    rate_hz: float
    cpu_percent: float
    ticks: int


def stats(record: Record, rate_hz: int) -> Stats:
    """Jitter: |interval - period x ticks apart| between consecutive noted ticks (a skipped
    tick counts as missed, not as jitter). Lateness: tick time - due time on the grid through
    the earliest tick (the one whose note came soonest after its due time). The anchor the
    producer used is not seen from outside, and no tick comes before it is due, so that grid
    is the anchor plus the shortest way from the wake-up to the note: lateness is what a
    tick took beyond the best case, 0 for the best tick, the same way for every system. (Not
    tick 0's note: the first call of a loop may be slow, such as an offloaded node's first
    hop, which starts the worker thread.)"""
    period = 1.0 / rate_hz
    ticks, times = record.ticks, record.times
    jitter = [
        abs((times[i] - times[i - 1]) - period * (ticks[i] - ticks[i - 1])) * 1e6
        for i in range(1, len(ticks))
    ]
    anchor = min(t - k * period for k, t in zip(ticks, times, strict=True))
    late = [(t - (anchor + k * period)) * 1e6 for k, t in zip(ticks, times, strict=True)]
    span = times[-1] - times[0]
    return Stats(
        jitter_p50_us=percentile(jitter, 50),
        jitter_p99_us=percentile(jitter, 99),
        late_p50_us=percentile(late, 50),
        late_p99_us=percentile(late, 99),
        late_max_us=max(late),
        missed=record.count - len(ticks),
        rate_hz=(len(ticks) - 1) / span if span > 0 else math.nan,
        cpu_percent=record.cpu_seconds / span * 100 if span > 0 else math.nan,
        ticks=len(ticks),
    )


@dataclass(slots=True)
class Row:
    key: str
    system: str
    rate_hz: int
    peer: str | None
    #: The run reported: the one with the lowest p99 jitter (the least disturbed).
    best: Stats
    #: The least CPU of the runs (the least disturbed), per cent of one CPU.
    cpu_percent: float
    runs: list[Stats] = field(default_factory=list)


def summarize(case: Case, runs: list[Stats]) -> Row:
    best = min(runs, key=lambda s: s.jitter_p99_us)
    cpu = min(s.cpu_percent for s in runs)
    return Row(case.key, case.system, case.rate_hz, case.peer, best, cpu, runs)


def goal(rows: dict[str, Row]) -> dict[str, Any]:
    """The goal per pool at GOAL_RATE_HZ, against the plain loop of the same run."""
    peer = rows.get(f"plain-{GOAL_RATE_HZ}")
    verdicts: dict[str, Any] = {}
    if peer is None:
        return {"met": None, "pools": verdicts}
    p = peer.best
    limit_p50 = GOAL_P50_FACTOR * p.jitter_p50_us + GOAL_P50_SLACK_US
    limit_p99 = GOAL_P99_FACTOR * p.jitter_p99_us
    limit_cpu = peer.cpu_percent + GOAL_EXTRA_CPU_PERCENT
    for pool in POOLS:
        row = rows.get(f"{pool}-{GOAL_RATE_HZ}")
        if row is None:
            continue
        s = row.best
        verdicts[pool] = {
            "jitter_p50_us": round(s.jitter_p50_us, 1),
            "limit_p50_us": round(limit_p50, 1),
            "jitter_p99_us": round(s.jitter_p99_us, 1),
            "limit_p99_us": round(limit_p99, 1),
            "cpu_percent": round(row.cpu_percent, 2),
            "limit_cpu_percent": round(limit_cpu, 2),
            "met": s.jitter_p50_us <= limit_p50
            and s.jitter_p99_us <= limit_p99
            and row.cpu_percent <= limit_cpu,
        }
    met = all(v["met"] for v in verdicts.values()) if verdicts else None
    return {"met": met, "pools": verdicts}


def row_name(row: Row) -> str:
    name = "plain (peer)" if row.system == "plain" else row.system
    if OFF in row.key:
        name += ", no histograms"
    if DEFAULT_TIMERS in row.key:
        name += ", ms timers"
    return name


def print_table(rows: list[Row], args: argparse.Namespace, verdict: dict[str, Any]) -> None:
    print("ostinato timing: IntervalProducer -> recording node, vs a plain loop to the same grid")
    print(
        f"Python {platform.python_version()} ({platform.machine()}), {os.cpu_count()} CPU(s), "
        f"{args.seconds:g} s per run, best (lowest p99 jitter) of {args.repeat} interleaved "
        f"run(s), load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print()
    names = {row.key: row_name(row) for row in rows}
    wide = max(len(n) for n in names.values())
    header = (
        f"{'rate':>6} {'system':<{wide}} {'jitter µs':>15} {'lateness µs':>15} {'late max':>9} "
        f"{'missed':>7} {'rate Hz':>9} {'CPU %':>6}"
    )
    print(header)
    print(f"{'':>6} {'':<{wide}} {'p50 / p99':>15} {'p50 / p99':>15} {'µs':>9}")
    print("-" * len(header))
    for row in rows:
        s = row.best
        name = names[row.key]
        print(
            f"{row.rate_hz:>6} {name:<{wide}} {s.jitter_p50_us:>7.0f} / {s.jitter_p99_us:<5.0f} "
            f"{s.late_p50_us:>7.0f} / {s.late_p99_us:<5.0f} {s.late_max_us:>9.0f} "
            f"{s.missed:>7} {s.rate_hz:>9.1f} {row.cpu_percent:>6.1f}"
        )
    print()
    print("jitter    |interval between consecutive ticks - period|")
    print("lateness  tick time - due time, on the grid through the earliest tick (so >= 0)")
    print("missed    ticks of the schedule skipped because the loop was late by a period or more")
    print("CPU %     CPU time of the whole process (all threads; the child for process loops)")
    print("          over the ticking span, per cent of one CPU; the least of the runs")
    print("          (the other columns: the run with the lowest p99 jitter)")
    if verdict["met"] is None:
        return
    print(
        f"\ngoal at {GOAL_RATE_HZ} Hz: jitter p50 ≤ {GOAL_P50_FACTOR:g}x plain + "
        f"{GOAL_P50_SLACK_US:g} µs, p99 ≤ {GOAL_P99_FACTOR:g}x plain, CPU ≤ plain + "
        f"{GOAL_EXTRA_CPU_PERCENT:g} points"
    )
    for pool, v in verdict["pools"].items():
        word = "met" if v["met"] else "MISSED"
        print(
            f"  {pool:<8} {word:<7} p50 {v['jitter_p50_us']:.0f} ≤ {v['limit_p50_us']:.0f}, "
            f"p99 {v['jitter_p99_us']:.0f} ≤ {v['limit_p99_us']:.0f}, "
            f"CPU {v['cpu_percent']:.1f} ≤ {v['limit_cpu_percent']:.1f} %"
        )


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/timing.py",
        description="Timing precision of IntervalProducer loops in every pool vs a plain "
        "Python loop sleeping to the same grid.",
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each run (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per case, interleaved; the best one counts"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=POOLS,
        metavar="POOL",
        help="only this pool (repeatable; the plain loops always run): " + ", ".join(POOLS),
    )
    parser.add_argument(
        "--rate",
        action="append",
        type=int,
        metavar="HZ",
        help="only this rate (repeatable; default: " + ", ".join(map(str, RATES_HZ)) + ")",
    )
    parser.add_argument(
        "--asyncio-peer",
        action="store_true",
        help="also run the plain loop on a bare event loop with asyncio.sleep",
    )
    parser.add_argument(
        "--no-offloaded",
        dest="offloaded",
        action="store_false",
        help="leave out the asyncio rows whose recorder is offloaded to the worker thread",
    )
    parser.add_argument(
        "--histograms",
        choices=["on", "off", "both"],
        default="on",
        help="the engine's duration histograms: on (default, as applications run), off "
        f"({HISTOGRAMS_ENV}=off), or both: every pool row twice, interleaved",
    )
    parser.add_argument(
        "--timers",
        choices=["precise", "default", "both"],
        default="precise",
        help="the event loops' timers: the runtime's precise ones (default), asyncio's own "
        f"({PRECISE_TIMERS_ENV}=off: whole milliseconds, as before the fix), or both: every "
        "pool row twice, interleaved",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 when the goal is missed at {GOAL_RATE_HZ} Hz",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeat < 1:
        parser.error("--seconds must be positive and --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = all_cases(
        args.rate or RATES_HZ,
        args.only or POOLS,
        args.asyncio_peer,
        args.offloaded,
        args.histograms,
        args.timers,
    )
    runs = interleave(
        cases,
        args.repeat,
        lambda c: c.key,
        lambda c: stats(run_case(c, args.seconds), c.rate_hz),
        lambda c: f"{c.system} {c.rate_hz} Hz, {args.seconds:g} s",
    )
    rows = {c.key: summarize(c, runs[c.key]) for c in cases}
    verdict = goal(rows)
    if args.json:
        document = {
            "benchmark": "timing",
            **machine(),
            "load_average": os.getloadavg(),
            "seconds": args.seconds,
            "repeat": args.repeat,
            "goal": verdict,
            "rows": [asdict(r) for r in rows.values()],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print_table(list(rows.values()), args, verdict)
    return 1 if args.check and verdict["met"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
