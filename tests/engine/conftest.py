"""Fixtures for engine tests: workflow documents built from journaling nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ostinato import WorkflowOrchestrator

POOLS = ["thread", "asyncio", "process"]
N = "tests.engine.nodes:"


def node(name: str, cls: str, kind: str | None = None, **config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "class": N + cls, "config": config}
    if kind is not None:
        out["kind"] = kind
    return out


def workflow(*loops: dict[str, Any], name: str = "test") -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"loops": list(loops)},
    }


def loop(
    name: str, pool: str, producer: dict[str, Any], *nodes: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    settings.setdefault("heartbeatSeconds", 0.1)
    settings.setdefault("restart", {"initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.5})
    return {"name": name, "pool": pool, "producer": producer, "nodes": list(nodes), **settings}


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "journal.log")


@pytest.fixture
def run() -> Iterator[Any]:
    """Start orchestrators and make sure every one is stopped after the test."""
    started: list[WorkflowOrchestrator] = []

    def start(doc: dict[str, Any], **kwargs: Any) -> WorkflowOrchestrator:
        orch = WorkflowOrchestrator(doc, **kwargs)
        started.append(orch)
        orch.start()
        return orch

    yield start
    for orch in started:
        orch.stop(timeout=20)
