"""The workflow every console test looks at: three loops in two pools, a broadcast and a work
queue between them, blocking and non-blocking nodes, two replicas, and a node that fails on
demand (while its tripwire file exists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

N = "tests.console.nodes:"


def document(tripwire: Path) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "console-demo"},
        "spec": {
            "queues": [
                {"name": "events", "mode": "broadcast", "capacity": 200, "onFull": "dropOldest"},
                {"name": "jobs", "mode": "work", "capacity": 100},
            ],
            "loops": [
                {
                    "name": "source",
                    "pool": "thread",
                    "producer": {
                        "name": "tick",
                        "class": "IntervalProducer",
                        "config": {"periodSeconds": 0.05},
                    },
                    "nodes": [
                        {
                            "name": "check",
                            "kind": "blocking",
                            "class": N + "Tripwire",
                            "config": {"path": str(tripwire)},
                        },
                        {"name": "publish", "kind": "blocking", "queue": {"write": "events"}},
                        {"name": "handoff", "kind": "nonBlocking", "queue": {"write": "jobs"}},
                    ],
                },
                {
                    "name": "watcher",
                    "pool": "asyncio",
                    "producer": {"name": "events", "queue": {"read": "events"}},
                    "nodes": [
                        {
                            "name": "log",
                            "kind": "blocking",
                            "class": "LogSink",
                            "config": {"level": "DEBUG", "every": 1000},
                        }
                    ],
                },
                {
                    "name": "workers",
                    "pool": "thread",
                    "replicas": 2,
                    "circuitBreaker": {"consecutiveFailures": 50, "cooldownSeconds": 5},
                    "producer": {"name": "jobs", "queue": {"read": "jobs"}},
                    "nodes": [
                        {
                            "name": "store",
                            "kind": "blocking",
                            "class": "LogSink",
                            "config": {"level": "DEBUG", "every": 1000},
                        }
                    ],
                },
            ],
        },
    }


def names(doc: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """(loops, (loop, node) pairs, queues) the document declares."""
    loops = doc["spec"]["loops"]
    nodes = {(lp["name"], n["name"]) for lp in loops for n in [lp["producer"], *lp["nodes"]]}
    return {lp["name"] for lp in loops}, nodes, {q["name"] for q in doc["spec"]["queues"]}
