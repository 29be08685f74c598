"""Pure status computation: spec + the hub's /status + the pods -> the Workflow's .status."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ostinato import DesiredState, LoopState, LoopStatus, Workflow, WorkflowStatus

from ._children import effective_state
from ._status_models import (
    MAX_ERROR_CHARS,
    Condition,
    LoopSummary,
    NodeSummary,
    Phase,
    QueueSummary,
    WorkflowResourceStatus,
)

__all__ = ["Observation", "compute_status", "fit", "invalid_status", "previous_status", "to_json"]

_HEALTH_ORDER = ["healthy", "retrying", "failing"]


def previous_status(body: Mapping[str, Any]) -> WorkflowResourceStatus:
    """The .status the object carries, or an empty one when it is missing or not ours."""
    try:
        return WorkflowResourceStatus.model_validate(body.get("status") or {})
    except ValueError:
        return WorkflowResourceStatus()


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class Observation:
    """What the operator saw in one round: the hub's answer (or why none) and the pods."""

    def __init__(
        self,
        hub: WorkflowStatus | None,
        rates: Mapping[tuple[str, int], float],
        hub_error: str | None,
        pods: Sequence[Mapping[str, Any]],
    ) -> None:
        self.hub = hub
        self.rates = rates
        self.hub_error = hub_error
        self.pods = pods

    def pods_of(self, loop: str) -> int:
        return sum(
            1
            for p in self.pods
            if p["metadata"].get("labels", {}).get("ostinato.dev/loop") == loop
            and not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Failed", "Succeeded")
        )

    def finished_replicas(self, loop: str) -> set[int]:
        """Replicas of the loop whose pod Succeeded: they ended for good and stay so, also
        when a restarted hub never heard from them."""
        found: set[int] = set()
        for p in self.pods:
            labels = p["metadata"].get("labels", {})
            if (
                labels.get("ostinato.dev/loop") == loop
                and not p["metadata"].get("deletionTimestamp")
                and p.get("status", {}).get("phase") == "Succeeded"
                and str(labels.get("ostinato.dev/replica", "")).isdigit()
            ):
                found.add(int(labels["ostinato.dev/replica"]))
        return found


def _aggregate(expected: int, replicas: list[LoopStatus], desired: DesiredState) -> str:
    states = [r.state.value for r in replicas]
    if desired is DesiredState.STOPPED:
        return "stopped" if all(s == "stopped" for s in states) else "stopping"
    if "error" in states:
        return "error"
    if len(states) < expected or "pending" in states:
        return "pending"
    if "stopping" in states:
        return "stopping"
    if states and all(s in ("stopped", "finished") for s in states) and "finished" in states:
        return "finished"
    if states and all(s == "stopped" for s in states):
        return "stopped"
    if states and all(s == "paused" for s in states):
        return "paused"
    return "running"


def _with_finished(
    loop: str, pool: str, replicas: list[LoopStatus], finished: set[int]
) -> list[LoopStatus]:
    """The hub's replicas, with those whose pod Succeeded reported as finished (a hub that
    restarted since, or missed their last word, would show them pending or lost)."""
    by_index = {r.replica: r for r in replicas}
    for index in finished:
        known = by_index.get(index)
        if known is not None and known.state is LoopState.FINISHED:
            continue
        if known is None:
            by_index[index] = LoopStatus(
                name=loop,
                replica=index,
                pool=pool,
                state=LoopState.FINISHED,
                reason="its pod Succeeded: the loop ended by itself",
            )
        else:
            by_index[index] = known.model_copy(
                update={"state": LoopState.FINISHED, "reason": "its pod Succeeded"}
            )
    return [by_index[i] for i in sorted(by_index)]


def _loop_summary(
    workflow: Workflow,
    index: int,
    obs: Observation,
    previous: Mapping[str, LoopSummary],
    now: str,
) -> tuple[LoopSummary, list[NodeSummary]]:
    spec = workflow.spec.loops[index]
    desired = effective_state(workflow, spec)
    expected = 0 if desired is DesiredState.STOPPED else spec.replicas
    replicas = [lp for lp in (obs.hub.loops if obs.hub else []) if lp.name == spec.name]
    replicas = [lp for lp in replicas if lp.replica < spec.replicas]
    finished = {r for r in obs.finished_replicas(spec.name) if r < spec.replicas}
    if finished and desired is not DesiredState.STOPPED:
        replicas = _with_finished(spec.name, spec.pool.value, replicas, finished)
    if obs.hub is None:
        if desired is DesiredState.STOPPED and not obs.pods_of(spec.name):
            state = "stopped"
        elif expected and len(finished) >= expected:
            state = "finished"
        else:
            state = "unknown"
    else:
        state = _aggregate(expected, replicas, desired)
    before = previous.get(spec.name)
    since = before.state_since if before is not None and before.state == state else now
    rates = [
        obs.rates[(spec.name, r.replica)] for r in replicas if (spec.name, r.replica) in obs.rates
    ]
    last_error = next((r.last_error for r in replicas if r.last_error), None)
    summary = LoopSummary(
        name=spec.name,
        desired_state=desired.value,
        state=state,
        state_since=since,
        replicas=expected,
        replicas_ready=sum(1 for r in replicas if r.state.value in ("running", "paused")),
        pods=obs.pods_of(spec.name),
        iterations=sum(r.iterations for r in replicas),
        iterations_per_second=round(sum(rates), 3) if rates else None,
        errors=sum(r.failed_iterations for r in replicas),
        last_error=_cut(last_error),
    )
    nodes: dict[str, NodeSummary] = {}
    for r in replicas:
        for n in r.nodes:
            cur = nodes.get(n.name)
            health = n.health.value
            if cur is not None:
                worst = max(cur.health, health, key=_HEALTH_ORDER.index)
                nodes[n.name] = cur.model_copy(
                    update={
                        "health": worst,
                        "calls": cur.calls + n.calls,
                        "errors": cur.errors + n.errors,
                        "last_error": cur.last_error or _cut(n.last_error),
                    }
                )
            else:
                nodes[n.name] = NodeSummary(
                    loop=spec.name,
                    name=n.name,
                    health=health,
                    calls=n.calls,
                    errors=n.errors,
                    last_error=_cut(n.last_error),
                )
    return summary, list(nodes.values())


def _condition(
    previous: Mapping[str, Condition],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> Condition:
    value = "True" if status else "False"
    before = previous.get(kind)
    since = before.last_transition_time if before is not None and before.status == value else now
    return Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def compute_status(
    workflow: Workflow,
    generation: int | None,
    obs: Observation,
    previous: WorkflowResourceStatus,
    now: str,
    hub_url: str,
) -> WorkflowResourceStatus:
    """The new .status; ``previous`` carries transition times and whether it was ever ready."""
    before_loops = {lp.name: lp for lp in previous.loops}
    loops: list[LoopSummary] = []
    nodes: list[NodeSummary] = []
    for i in range(len(workflow.spec.loops)):
        summary, node_summaries = _loop_summary(workflow, i, obs, before_loops, now)
        loops.append(summary)
        nodes.extend(node_summaries)
    active = [lp for lp in loops if lp.desired_state != DesiredState.STOPPED.value]
    # A finished loop waits for nothing: it counts with the ready ones.
    ready = [
        lp
        for lp in active
        if lp.state == "finished" or (lp.replicas_ready >= lp.replicas and lp.state != "error")
    ]
    errored = [lp.name for lp in active if lp.state == "error"]
    was_ready = any(c.type == "Ready" and c.status == "True" for c in previous.conditions)
    was_degraded = previous.phase is Phase.DEGRADED
    if not active:
        phase, reason, message = Phase.STOPPED, "AllLoopsStopped", "every loop is stopped"
    elif all(lp.state == "finished" for lp in active):
        phase, reason = Phase.FINISHED, "AllLoopsFinished"
        message = f"every loop ended by itself ({', '.join(lp.name for lp in active)})"
    elif obs.hub is None:
        reason, message = "HubUnreachable", f"the hub does not answer: {obs.hub_error}"
        phase = Phase.DEGRADED if (was_ready or was_degraded) else Phase.PENDING
        if phase is Phase.PENDING:
            reason = "HubStarting"
    elif errored:
        phase, reason = Phase.DEGRADED, "LoopError"
        message = f"loops in error: {', '.join(errored)}"
    elif len(ready) == len(active):
        paused = all(lp.state == "paused" for lp in active)
        phase = Phase.PAUSED if paused else Phase.RUNNING
        reason = "AllLoopsPaused" if paused else "AllLoopsReady"
        message = f"{len(ready)}/{len(active)} loops ready"
    else:
        waiting = [lp.name for lp in active if lp not in ready]
        phase = Phase.DEGRADED if (was_ready or was_degraded) else Phase.PENDING
        reason = "LoopsNotReady" if phase is Phase.DEGRADED else "WaitingForLoops"
        message = f"waiting for loops: {', '.join(waiting)}"
    before_conds = {c.type: c for c in previous.conditions}
    is_ready = phase in (Phase.RUNNING, Phase.PAUSED)
    conditions = [
        _condition(before_conds, "Ready", is_ready, reason, message, now, generation),
        _condition(
            before_conds,
            "Progressing",
            phase is Phase.PENDING,
            reason if phase is Phase.PENDING else ("Converged" if is_ready else phase.value),
            message if phase is Phase.PENDING else "",
            now,
            generation,
        ),
        _condition(
            before_conds,
            "Degraded",
            phase is Phase.DEGRADED,
            reason if phase is Phase.DEGRADED else "AsExpected",
            message if phase is Phase.DEGRADED else "",
            now,
            generation,
        ),
    ]
    rates = [lp.iterations_per_second for lp in loops if lp.iterations_per_second is not None]
    queues = [
        QueueSummary(
            name=q.name,
            depth=q.depth,
            enqueued=q.enqueued,
            delivered=q.delivered,
            dropped=q.dropped,
        )
        for q in (obs.hub.queues if obs.hub else [])
    ]
    return WorkflowResourceStatus(
        observed_generation=generation,
        phase=phase,
        ready=f"{len(ready)}/{len(active)}",
        loops_ready=len(ready),
        loops_total=len(active),
        iterations_per_second=round(sum(rates), 3) if rates else None,
        errors=sum(lp.errors for lp in loops),
        conditions=conditions,
        loops=loops,
        nodes=nodes,
        queues=queues,
        hub_url=hub_url,
        last_update_time=now,
    )


def invalid_status(
    generation: int | None, message: str, previous: WorkflowResourceStatus, now: str
) -> WorkflowResourceStatus:
    """Status of a Workflow whose spec the runtime rejects: Failed, with the field-named errors."""
    before = {c.type: c for c in previous.conditions}
    msg = message[:1000]
    return WorkflowResourceStatus(
        observed_generation=generation,
        phase=Phase.FAILED,
        conditions=[
            _condition(before, "Ready", False, "InvalidSpec", msg, now, generation),
            _condition(before, "Progressing", False, "InvalidSpec", msg, now, generation),
            _condition(before, "Degraded", True, "InvalidSpec", msg, now, generation),
        ],
        last_update_time=now,
    )


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def to_json(status: WorkflowResourceStatus) -> dict[str, Any]:
    """The status for a merge patch: top-level None stays (it removes a stale field), nested
    None and empty strings are left out (the API server turns an empty string into null and
    then rejects it against the string schema)."""
    doc = status.model_dump(mode="json", by_alias=True)
    return {k: _compact(v) for k, v in doc.items()}


def fit(status: WorkflowResourceStatus, max_bytes: int) -> dict[str, Any]:
    """The status as JSON, at most ``max_bytes``: node details go first, then loops' errors,
    then loops and queues beyond what fits; ``truncated`` says what was left out."""

    def size(doc: dict[str, Any]) -> int:
        return len(json.dumps(doc, separators=(",", ":")).encode())

    doc = to_json(status)
    if size(doc) <= max_bytes:
        return doc
    dropped = [f"node details ({len(doc['nodes'])} nodes)"]
    doc["nodes"] = []
    if size(doc) > max_bytes:
        for lp in doc["loops"]:
            lp.pop("lastError", None)
        dropped.append("loops' last errors")
    for key in ("queues", "loops"):
        total = len(doc[key])
        while size(doc) > max_bytes and doc[key]:
            doc[key].pop()
        if len(doc[key]) < total:
            dropped.append(f"{total - len(doc[key])} of {total} {key}")
    doc["truncated"] = f"left out to stay under {max_bytes} bytes: {'; '.join(dropped)}"
    return doc
