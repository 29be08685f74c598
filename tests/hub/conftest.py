"""Fixtures for hub tests: workflow documents with queues, orchestrators that always stop,
and bounded waits on what the loops journal and what the hub counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ostinato import WorkflowOrchestrator

from .nodes import read

N = "tests.hub.nodes:"


def node(name: str, cls: str, kind: str | None = None, **config: Any) -> dict[str, Any]:
    """A node of class ``cls`` from tests/hub/nodes.py (or a built-in, when it has no ':')."""
    out: dict[str, Any] = {"name": name, "class": cls if ":" in cls else N + cls, "config": config}
    if kind is not None:
        out["kind"] = kind
    return out


def writer(name: str, queue: str, kind: str = "blocking", **settings: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "queue": {"write": queue}, **settings}


def reader(name: str, queue: str, kind: str | None = None, **config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "queue": {"read": queue}, "config": config}
    if kind is not None:
        out["kind"] = kind
    return out


def loop(
    name: str, pool: str, producer: dict[str, Any], *nodes: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    settings.setdefault("heartbeatSeconds", 0.1)
    settings.setdefault("restart", {"initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.5})
    return {"name": name, "pool": pool, "producer": producer, "nodes": list(nodes), **settings}


def queue(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, **settings}


def workflow(
    *loops: dict[str, Any], queues: list[dict[str, Any]], name: str = "hubtest"
) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"loops": list(loops), "queues": queues},
    }


@pytest.fixture
def run() -> Iterator[Callable[..., WorkflowOrchestrator]]:
    """Start orchestrators; every one is stopped after the test, whatever happened."""
    started: list[WorkflowOrchestrator] = []

    def start(doc: dict[str, Any], **kwargs: Any) -> WorkflowOrchestrator:
        orch = WorkflowOrchestrator(doc, **kwargs)
        started.append(orch)
        orch.start()
        return orch

    yield start
    for orch in reversed(started):
        orch.stop(timeout=20)


# -- bounded waits and what to wait for ------------------------------------------------------

WAIT = 30.0


def until(predicate: Callable[[], bool], timeout: float = WAIT, every: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True


def records(journal: str | Path) -> list[tuple[int, int, bool, int]]:
    """(n, message id, redelivered, pid) per line a Record node wrote."""
    out = []
    for line in read(journal):
        _tag, n, msg_id, redelivered, pid = line.split()
        out.append((int(n), int(msg_id), redelivered == "1", int(pid)))
    return out


def complete(journal: str | Path, n: int) -> bool:
    return len(read(journal)) >= n


def values(journal: str | Path) -> list[int]:
    return [r[0] for r in records(journal)]


def counters(orch: WorkflowOrchestrator, name: str = "q") -> dict[str, int]:
    for q in orch.status().queues:
        if q.name == name:
            return q.model_dump(exclude={"name"})
    raise KeyError(name)


def consumers(orch: WorkflowOrchestrator, group: str, name: str = "q") -> dict[bytes, Any]:
    """The hub's consumers of a group (a reading loop, or '*' for a work queue)."""
    assert orch.hub is not None
    return dict(orch.hub.queues[name].groups[group].consumers)


def subscribed(orch: WorkflowOrchestrator, group: str, n: int = 1, name: str = "q") -> bool:
    return until(lambda: len(consumers(orch, group, name)) >= n)


def go(tmp_path: Path) -> str:
    return str(tmp_path / "go")


def start_writing(path: str) -> None:
    Path(path).write_text("go")
