"""Autoscaling: time to drain a backlog, autoscaled against fixed replica counts, in one run.

A writer loop fills a work queue with ``--messages`` messages (20,000) while the reader loop is
held back (``state: stopped`` in its spec); once the queue holds them all the reader is started
(``set_state``) and the clock runs until the hub has every message acknowledged. The reader
does ``--work-ms`` (5) of work per message (a sleep: I/O-like work, which replicas in the
thread pool overlap; ``--pool process`` for the process pool). Three cases: a fixed single
replica, fixed 4 replicas, and ``autoscale`` 1..4 (defaults but a short scale-down delay). The
goal: autoscaled within 1.3x of fixed 4. The autoscaled case also measures how long the idle
queue takes to bring the loop back to ``minReplicas`` (goal: within the scale-down delay plus
one interval).

Run from the repository root::

    .venv/bin/python bench/autoscale.py            # table
    .venv/bin/python bench/autoscale.py --json     # machine-readable
    .venv/bin/python bench/autoscale.py --messages 4000   # a quick look
"""

from __future__ import annotations

import sys
from pathlib import Path

# The process pool imports the node class by path (``bench.autoscale:Work``) in a child that
# gets this process's sys.path, so the repository root must be on it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench._harness import machine
from ostinato import BlockingNode, DesiredState, NodeConfig, NodeData, WorkflowOrchestrator

MODULE = "bench.autoscale"
#: How long one case may take before the benchmark gives up, seconds.
RUN_TIMEOUT_SECONDS = 900.0
SCALE_DOWN_DELAY_SECONDS = 5.0
INTERVAL_SECONDS = 1.0
GOAL_RATIO = 1.3


class WorkConfig(NodeConfig):
    milliseconds: float


class Work(BlockingNode[WorkConfig]):
    """``milliseconds`` of work per message (a sleep, as waiting on I/O)."""

    def process(self, data: NodeData) -> NodeData:
        time.sleep(self.config.milliseconds / 1000)
        return data


@dataclass
class Result:
    case: str
    drain_seconds: float
    messages_per_second: float
    peak_replicas: int
    idle_to_min_seconds: float | None = None


def document(messages: int, work_ms: float, pool: str, scaling: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "bench-autoscale"},
        "spec": {
            "queues": [{"name": "jobs", "mode": "work", "capacity": messages}],
            "loops": [
                {
                    "name": "fill",
                    "producer": {
                        "name": "count",
                        "class": "CounterProducer",
                        "config": {"count": messages},
                    },
                    "nodes": [
                        {"name": "put", "kind": "nonBlocking", "queue": {"write": "jobs"}},
                    ],
                },
                {
                    "name": "reader",
                    "pool": pool,
                    "state": "stopped",
                    "producer": {"name": "take", "queue": {"read": "jobs"}},
                    "nodes": [
                        {
                            "name": "work",
                            "kind": "blocking",
                            "class": f"{MODULE}:Work",
                            "config": {"milliseconds": work_ms},
                        }
                    ],
                    **scaling,
                },
            ],
        },
    }


def _wait(what: str, predicate: Any, timeout: float = RUN_TIMEOUT_SECONDS) -> float:
    """Poll ``predicate`` every 10 ms; the time it first held (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return time.perf_counter()


def run_case(case: str, messages: int, work_ms: float, pool: str) -> Result:
    autoscaled = case.startswith("autoscale")
    if autoscaled:
        scaling: dict[str, Any] = {
            "autoscale": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "scaleDownDelaySeconds": SCALE_DOWN_DELAY_SECONDS,
                "intervalSeconds": INTERVAL_SECONDS,
            }
        }
    else:
        scaling = {"replicas": int(case.split("-")[1])}
    orch = WorkflowOrchestrator(document(messages, work_ms, pool, scaling))
    orch.start()
    try:

        def queue() -> Any:
            return orch.status().queues[0]

        _wait("the backlog", lambda: queue().enqueued >= messages)
        peak = 0

        def drained() -> bool:
            nonlocal peak
            peak = max(peak, len([h for h in orch.replicas("reader") if not h.done]))
            return bool(queue().acknowledged >= messages)

        started = time.perf_counter()
        orch.set_state("reader", DesiredState.RUNNING)
        ended = _wait("the drain", drained)
        idle = None
        if autoscaled:
            back = _wait(
                "the return to minReplicas",
                lambda: orch.status().autoscale[0].current_replicas == 1,
                timeout=SCALE_DOWN_DELAY_SECONDS * 10 + 60,
            )
            idle = back - ended
        seconds = ended - started
        return Result(case, seconds, messages / seconds, peak, idle)
    finally:
        orch.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--work-ms", type=float, default=5.0)
    parser.add_argument("--pool", choices=["thread", "asyncio", "process"], default="thread")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for case in ("fixed-1", "fixed-4", "autoscale-1..4"):
        print(f"{case} ...", file=sys.stderr, flush=True)
        results.append(run_case(case, args.messages, args.work_ms, args.pool))
    four = next(r for r in results if r.case == "fixed-4").drain_seconds
    auto = next(r for r in results if r.case.startswith("autoscale"))
    ratio = auto.drain_seconds / four
    if args.json:
        out = {
            "machine": machine(),
            "messages": args.messages,
            "work_ms": args.work_ms,
            "pool": args.pool,
            "results": [asdict(r) for r in results],
            "autoscaled_over_fixed_4": ratio,
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{args.messages} messages, {args.work_ms:g} ms of work each, {args.pool} pool "
            f"(scale-down delay {SCALE_DOWN_DELAY_SECONDS:g} s, interval {INTERVAL_SECONDS:g} s)"
        )
        print("| case | drain s | msg/s | peak replicas | vs fixed-4 | idle to min s |")
        print("|---|---|---|---|---|---|")
        for r in results:
            idle = "-" if r.idle_to_min_seconds is None else f"{r.idle_to_min_seconds:.1f}"
            print(
                f"| {r.case} | {r.drain_seconds:.1f} | {r.messages_per_second:.0f} | "
                f"{r.peak_replicas} | {r.drain_seconds / four:.2f}x | {idle} |"
            )
        verdict = "met" if ratio <= GOAL_RATIO else "missed"
        print(f"goal autoscaled <= {GOAL_RATIO}x fixed-4: {verdict} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
