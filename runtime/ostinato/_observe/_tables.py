"""A workflow's status as plain-text tables, for `ostinato run` (periodic and final) and
`ostinato status`: loops with their state and reason, queues with their counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._model._status import WorkflowStatus, replica_key

__all__ = ["format_table"]


def format_table(
    status: WorkflowStatus, rates: dict[tuple[Any, Any], float | None] | None = None
) -> str:
    """The loops' status as a plain table (state, iterations, failures, failing nodes); with
    ``rates`` (iterations per second by (loop, replica)) an IT/S column too."""
    rows: list[tuple[str, ...]] = [
        ("LOOP", "POOL", "STATE", "ITERATIONS", "FAILED", "NODES FAILING", "REASON")
    ]
    if rates is not None:
        rows[0] = (
            "LOOP",
            "POOL",
            "STATE",
            "ITERATIONS",
            "IT/S",
            "FAILED",
            "NODES FAILING",
            "REASON",
        )
    for lp in status.loops:
        failing = ",".join(n.name for n in lp.nodes if n.health.value != "healthy") or "-"
        row = [
            replica_key(lp.name, lp.replica),
            lp.pool,
            lp.state.value,
            str(lp.iterations),
            str(lp.failed_iterations),
            failing,
            lp.reason or "",
        ]
        if rates is not None:
            rate = rates.get((lp.name, lp.replica))
            row.insert(4, "-" if rate is None else f"{rate:.1f}")
        rows.append(tuple(row))
    text = _columns(rows)
    if status.queues:
        qrows = [
            (
                "QUEUE",
                "DEPTH",
                "ENQUEUED",
                "DELIVERED",
                "ACKED",
                "DROPPED",
                "REDELIVERED",
                "REFUSED",
                "",
            )
        ]
        for q in status.queues:
            qrows.append(
                (
                    q.name,
                    str(q.depth),
                    str(q.enqueued),
                    str(q.delivered),
                    str(q.acknowledged),
                    str(q.dropped),
                    str(q.redelivered),
                    str(q.refused),
                    "",
                )
            )
        text += "\n" + _columns(qrows)
    if status.autoscale:
        arows = [("AUTOSCALED LOOP", "DESIRED", "CURRENT", "BACKLOG", "")]
        for a in status.autoscale:
            arows.append(
                (
                    a.loop,
                    "-" if a.desired_replicas is None else str(a.desired_replicas),
                    str(a.current_replicas),
                    str(a.backlog),
                    "",
                )
            )
        text += "\n" + _columns(arows)
    return text


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        (
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
        ).rstrip()
        for r in rows
    )
