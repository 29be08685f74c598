"""`get`: a Workflow's status as a tree people read (loops, nodes, queues, conditions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ostinato.lowlevel import QueueSpec

__all__ = ["render_tree", "render_trees"]

#: What a queue holds at most when its spec names no capacity (the runtime's default).
_DEFAULT_CAPACITY = QueueSpec.model_fields["capacity"].default


def _rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}/s"


def _cut(text: str | None, chars: int = 120) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def _branch(lines: list[str], items: Sequence[tuple[str, list[str]]], indent: str = "") -> None:
    """Append ``items`` (a line and its child lines) as tree branches under ``indent``."""
    for i, (line, children) in enumerate(items):
        last = i == len(items) - 1
        lines.append(f"{indent}{'└─' if last else '├─'} {line}")
        child_indent = indent + ("   " if last else "│  ")
        for j, child in enumerate(children):
            lines.append(f"{child_indent}{'└─' if j == len(children) - 1 else '├─'} {child}")


def _loop_line(loop: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    state = loop.get("state", "unknown")
    desired = loop.get("desiredState")
    wanted = f" (desired {desired})" if desired and desired != state else ""
    line = (
        f"loop {loop['name']}: {state}{wanted}, replicas "
        f"{loop.get('replicasReady', 0)}/{loop.get('replicas', 0)} ready{_bounds(spec)}, "
        f"{_rate(loop.get('iterationsPerSecond'))}, {loop.get('iterations', 0)} iterations, "
        f"{loop.get('errors', 0)} errors"
    )
    if loop.get("lastError"):
        line += f", last error: {_cut(loop['lastError'])}"
    if loop.get("message"):
        line += f" [{_cut(loop['message'])}]"
    return line


def _bounds(spec: Mapping[str, Any]) -> str:
    """An autoscaled loop's bounds, after its replicas (the desired count of the moment)."""
    autoscale = spec.get("autoscale")
    if not autoscale:
        return ""
    return f" (autoscale {autoscale.get('minReplicas', 1)}..{autoscale.get('maxReplicas')})"


def _node_line(node: Mapping[str, Any]) -> str:
    line = (
        f"node {node['name']}: {node.get('health', '?')}, {node.get('calls', 0)} calls, "
        f"{node.get('errors', 0)} errors"
    )
    if node.get("lastError"):
        line += f", last error: {_cut(node['lastError'])}"
    return line


def _queue_users(spec: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """queue -> {"write": loops, "read": loops}, from the nodes' and producers' `queue` refs."""
    users: dict[str, dict[str, list[str]]] = {}
    for loop in spec.get("loops") or []:
        parts = [loop.get("producer") or {}, *(loop.get("nodes") or [])]
        for part in parts:
            ref = part.get("queue") or {}
            for way in ("write", "read"):
                if ref.get(way):
                    found = users.setdefault(ref[way], {"write": [], "read": []})[way]
                    if loop.get("name") not in found:
                        found.append(loop.get("name"))
    return users


def _flow(loops: Sequence[str], reported: Mapping[str, Mapping[str, Any]]) -> str:
    """The loops' iterations per second, summed: a queue's pace (one message per iteration,
    unless a node batches or splits)."""
    rates = [reported.get(name, {}).get("iterationsPerSecond") for name in loops]
    known = [r for r in rates if r is not None]
    total = _rate(sum(known)) if known else "-"
    return f"{total} ({', '.join(loops)})" if loops else "- (no loop)"


def _queue_line(
    queue: Mapping[str, Any],
    capacity: Any,
    users: Mapping[str, list[str]],
    reported: Mapping[str, Mapping[str, Any]],
) -> str:
    line = (
        f"queue {queue['name']}: depth {queue.get('depth', 0)}/{capacity}, "
        f"enqueued {queue.get('enqueued', 0)}, delivered {queue.get('delivered', 0)}, "
        f"acknowledged {queue.get('acknowledged', 0)}"
    )
    for key in ("dropped", "redelivered", "refused"):
        if queue.get(key):
            line += f", {key} {queue[key]}"
    line += (
        f"; writers {_flow(users.get('write', []), reported)}, "
        f"readers {_flow(users.get('read', []), reported)}"
    )
    return line


def render_tree(workflow: Mapping[str, Any]) -> str:
    meta = workflow["metadata"]
    spec = workflow.get("spec") or {}
    status = workflow.get("status") or {}
    head = (
        f"{meta['name']} ({meta.get('namespace', '?')}): {status.get('phase') or 'no status yet'}"
    )
    if status.get("ready"):
        head += f", loops {status['ready']} ready"
    if status.get("iterationsPerSecond") is not None:
        head += f", {_rate(status['iterationsPerSecond'])}"
    if status.get("lastUpdateTime"):
        head += f", updated {status['lastUpdateTime']}"
    lines = [head]
    nodes: dict[str, list[Mapping[str, Any]]] = {}
    for node in status.get("nodes") or []:
        nodes.setdefault(node.get("loop", ""), []).append(node)
    reported = {lp["name"]: lp for lp in status.get("loops") or []}
    items: list[tuple[str, list[str]]] = []
    for loop_spec in spec.get("loops") or []:
        name = loop_spec.get("name")
        loop = reported.get(name) or {"name": name, "state": "unknown"}
        line = _loop_line(loop, loop_spec)
        items.append((line, [_node_line(n) for n in nodes.get(name, [])]))
    capacities = {
        q.get("name"): q.get("capacity", _DEFAULT_CAPACITY) for q in spec.get("queues") or []
    }
    users = _queue_users(spec)
    for queue in status.get("queues") or []:
        capacity = capacities.get(queue["name"], "?")
        items.append((_queue_line(queue, capacity, users.get(queue["name"], {}), reported), []))
    conditions = [
        f"{c.get('type')}={c.get('status')} {c.get('reason', '')}"
        + (f": {_cut(c['message'], 300)}" if c.get("message") else "")
        for c in status.get("conditions") or []
    ]
    if conditions:
        items.append(("conditions", conditions))
    if status.get("truncated"):
        items.append((f"truncated: {status['truncated']}", []))
    _branch(lines, items)
    return "\n".join(lines)


def render_trees(workflows: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join(render_tree(wf) for wf in workflows)
