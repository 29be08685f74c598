"""Workflow documents and running helpers shared by the built-in node tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ostinato import WorkflowOrchestrator

RECORDER = "tests.builtins.nodes:Recorder"
DESCRIBE = "tests.builtins.nodes:Describe"

#: Generous bound for anything that should happen "promptly"; a loaded CI box is slow.
PROMPT = 10.0


def workflow(
    pool: str,
    producer: dict[str, Any],
    nodes: list[dict[str, Any]],
    *,
    loop: str = "main",
    **settings: Any,
) -> dict[str, Any]:
    """A one-loop workflow document. Process loops report status every 50 ms."""
    spec: dict[str, Any] = {"name": loop, "pool": pool, "producer": producer, "nodes": nodes}
    if pool == "process":
        spec["heartbeatSeconds"] = 0.05
    spec.update(settings)
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "builtins"},
        "spec": {"loops": [spec]},
    }


def node(name: str, cls: str, kind: str | None = None, **config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "class": cls, "config": config}
    if kind is not None:
        out["kind"] = kind
    return out


def recorder(path: Any, name: str = "rec", kind: str = "blocking", **config: Any) -> dict[str, Any]:
    return node(name, RECORDER, kind, path=str(path), **config)


@contextmanager
def running(doc: dict[str, Any]) -> Iterator[WorkflowOrchestrator]:
    """Start the workflow; always stop it (and its threads or child process) on the way out."""
    orch = WorkflowOrchestrator(doc)
    orch.start()
    try:
        yield orch
    finally:
        orch.stop(timeout=PROMPT * 2)
