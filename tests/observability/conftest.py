"""A running workflow with loops in every pool, a queue between two of them, and its server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ostinato import WorkflowOrchestrator
from ostinato._observe._http import ObservabilityServer

#: The interval loops tick every PERIOD seconds: RATE iterations per second.
PERIOD = 0.02
RATE = 1 / PERIOD
#: Loops fed by an IntervalProducer, one per pool.
TICKING = {"t": "thread", "a": "asyncio", "p": "process"}
N = "tests.observability.nodes:"


@dataclass
class Reply:
    code: int
    content_type: str
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def get(url: str, timeout: float = 10.0) -> Reply:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return Reply(r.status, r.headers["Content-Type"], r.read().decode())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.headers["Content-Type"], e.read().decode())


def wait_until(check: Any, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return bool(check())


def ticking_loop(name: str, pool: str, *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "pool": pool,
        "heartbeatSeconds": 0.1,
        "producer": {
            "name": "tick",
            "class": "IntervalProducer",
            "config": {"periodSeconds": PERIOD},
        },
        "nodes": [
            {"name": "flaky", "kind": "blocking", "class": N + "FailEvery", "config": {"every": 5}},
            *extra,
        ],
    }


def document() -> dict[str, Any]:
    publish = {"name": "publish", "kind": "blocking", "queue": {"write": "ticks"}}
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "observed"},
        "spec": {
            "queues": [{"name": "ticks", "mode": "broadcast", "capacity": 100}],
            "loops": [
                ticking_loop("t", "thread", publish),
                ticking_loop("a", "asyncio"),
                ticking_loop("p", "process"),
                {
                    "name": "sink",
                    "pool": "thread",
                    "producer": {"name": "ticks", "queue": {"read": "ticks"}},
                    "nodes": [
                        {
                            "name": "log",
                            "kind": "blocking",
                            "class": "LogSink",
                            "config": {"level": "DEBUG", "every": 1000},
                        }
                    ],
                },
            ],
        },
    }


@dataclass
class Running:
    orchestrator: WorkflowOrchestrator
    server: ObservabilityServer

    def get(self, path: str) -> Reply:
        return get(self.server.url + path)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    """The workflow, started with its server on a free port, ready (/readyz 200)."""
    orchestrator = WorkflowOrchestrator(document())
    server = ObservabilityServer(orchestrator, port=0).start()
    try:
        orchestrator.start()
        env = Running(orchestrator, server)
        assert wait_until(lambda: env.get("/readyz").code == 200, timeout=30), env.get(
            "/readyz"
        ).body
        yield env
    finally:
        orchestrator.stop(timeout=20)
        server.close()
