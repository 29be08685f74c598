"""Iterations per second, computed by the operator from two reads of one hub incarnation: a
hub that restarted (its counts start again) or a loop that did never gives a false rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ostinato import LoopState, WorkflowStatus

__all__ = ["HubSample", "hub_incarnation", "hub_sample", "rates_between"]


@dataclass(frozen=True, slots=True)
class HubSample:
    """One read of the hub's /status: which hub incarnation answered, when (monotonic seconds),
    and the iterations of each replica connected to it."""

    incarnation: str | None
    taken: float
    iterations: Mapping[tuple[str, int], int]


def hub_incarnation(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The running hub as "pod uid/restarts": it changes when the hub's process does. None when
    there is no single running hub pod (a hub outside the cluster: then reads alone decide)."""
    running = [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "hub"
        and not p["metadata"].get("deletionTimestamp")
        and (p.get("status") or {}).get("phase") == "Running"
    ]
    if len(running) != 1:
        return None
    pod = running[0]
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    return f"{pod['metadata'].get('uid')}/{restarts}"


def hub_sample(hub: WorkflowStatus, pods: Sequence[Mapping[str, Any]], taken: float) -> HubSample:
    """A sample of the replicas that reported to this hub: a replica the hub lists as pending
    has not (or not yet, after a hub restart: its count then jumps from 0 to its whole count)."""
    return HubSample(
        hub_incarnation(pods),
        taken,
        {(r.name, r.replica): r.iterations for r in hub.loops if r.state is not LoopState.PENDING},
    )


def rates_between(before: HubSample | None, after: HubSample) -> dict[tuple[str, int], float]:
    """Iterations per second of each replica counted in both samples of one hub incarnation,
    whose count did not go down (a restarted loop process counts from 0 again)."""
    if before is None or before.incarnation != after.incarnation or after.taken <= before.taken:
        return {}
    span = after.taken - before.taken
    return {
        key: round((count - before.iterations[key]) / span, 3)
        for key, count in after.iterations.items()
        if key in before.iterations and count >= before.iterations[key]
    }
