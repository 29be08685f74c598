"""Pure status computation: spec + the hub's /status + the pods -> the Workflow's .status."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ostinato import DesiredState, LoopState, LoopStatus, NodeHealth, Workflow, WorkflowStatus
from ostinato.lowlevel import truncate

from ._autoscaling import replica_count
from ._children import effective_state, pod_finished
from ._problems import CAUSES, Problem, cut, pod_problems, queue_problems, summary
from ._status_models import (
    UNKNOWN,
    Condition,
    LoopSummary,
    NodeSummary,
    Phase,
    ReportedState,
    WorkflowResourceStatus,
)

__all__ = [
    "Observation",
    "compute_status",
    "fit",
    "invalid_status",
    "previous_status",
    "to_json",
]

_HEALTH_ORDER = [NodeHealth.HEALTHY, NodeHealth.RETRYING, NodeHealth.FAILING]
#: Replica states counted as ready: the replica is connected and does as told.
_READY = (LoopState.RUNNING, LoopState.PAUSED)
#: Degraded reasons that come from a pod's failure (HubCrashLooping, LoopUnschedulable, ...).
POD_REASONS = frozenset(f"{who}{cause}" for who in ("Hub", "Loop") for cause in CAUSES)


def previous_status(body: Mapping[str, Any]) -> WorkflowResourceStatus:
    """The .status the object carries, or an empty one when it is missing or not ours."""
    try:
        return WorkflowResourceStatus.model_validate(body.get("status") or {})
    except ValueError:
        return WorkflowResourceStatus()


def _cut(text: str | None) -> str | None:
    return None if text is None else truncate(text)


class Observation:
    """What the operator saw in one round: the hub's answer (or why none) and the pods."""

    def __init__(
        self,
        hub: WorkflowStatus | None,
        rates: Mapping[tuple[str, int], float],
        hub_error: str | None,
        pods: Sequence[Mapping[str, Any]],
        volume: Mapping[str, Any] | None = None,
        scaled: Mapping[str, int] | None = None,
    ) -> None:
        self.hub = hub
        self.rates = rates
        self.hub_error = hub_error
        #: The workflow's pods, the hub's and the loops' (app.kubernetes.io/component says which).
        self.pods = pods
        #: The hub's PersistentVolumeClaim, read when it may explain an unschedulable hub.
        self.volume = volume
        #: Autoscaled loops: the replicas last decided, by loop.
        self.scaled = scaled or {}

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
                and pod_finished(p)
                and str(labels.get("ostinato.dev/replica", "")).isdigit()
            ):
                found.add(int(labels["ostinato.dev/replica"]))
        return found


def _aggregate(expected: int, replicas: list[LoopStatus], desired: DesiredState) -> LoopState:
    states = [r.state for r in replicas]
    done = (LoopState.STOPPED, LoopState.FINISHED)
    if desired is DesiredState.STOPPED:
        stopped = all(s is LoopState.STOPPED for s in states)
        return LoopState.STOPPED if stopped else LoopState.STOPPING
    if LoopState.ERROR in states:
        return LoopState.ERROR
    if len(states) < expected or LoopState.PENDING in states:
        return LoopState.PENDING
    if LoopState.STOPPING in states:
        return LoopState.STOPPING
    if states and all(s in done for s in states) and LoopState.FINISHED in states:
        return LoopState.FINISHED
    if states and all(s is LoopState.STOPPED for s in states):
        return LoopState.STOPPED
    if states and all(s is LoopState.PAUSED for s in states):
        return LoopState.PAUSED
    return LoopState.RUNNING


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
    problems: Sequence[Problem],
    answered: str | None,
) -> tuple[LoopSummary, list[NodeSummary]]:
    """One loop's summary and nodes. ``answered``: when the counts in ``previous`` were the
    hub's (the previous status's time): kept, marked so, while the hub does not answer."""
    spec = workflow.spec.loops[index]
    desired = effective_state(workflow, spec)
    count = replica_count(spec, obs.scaled)
    expected = 0 if desired is DesiredState.STOPPED else count
    replicas = [lp for lp in (obs.hub.loops if obs.hub else []) if lp.name == spec.name]
    replicas = [lp for lp in replicas if lp.replica < count]
    finished = {r for r in obs.finished_replicas(spec.name) if r < count}
    if finished and desired is not DesiredState.STOPPED:
        replicas = _with_finished(spec.name, spec.pool.value, replicas, finished)
    state: ReportedState
    if obs.hub is None:
        if desired is DesiredState.STOPPED and not obs.pods_of(spec.name):
            state = LoopState.STOPPED
        elif expected and len(finished) >= expected:
            state = LoopState.FINISHED
        else:
            state = UNKNOWN
    else:
        state = _aggregate(expected, replicas, desired)
    before = previous.get(spec.name)
    since = before.state_since if before is not None and before.state == state else now
    rates = [
        obs.rates[(spec.name, r.replica)] for r in replicas if (spec.name, r.replica) in obs.rates
    ]
    last_error = next((r.last_error for r in replicas if r.last_error), None)
    problem = next((p for p in problems if p.loop == spec.name), None)
    iterations = sum(r.iterations for r in replicas)
    errors = sum(r.failed_iterations for r in replicas)
    counts_as_of = None
    if obs.hub is None and before is not None and (before.counts_as_of or before.state != UNKNOWN):
        # The hub is away: its last answer, marked as such, says more than zeros.
        iterations, errors, last_error = before.iterations, before.errors, before.last_error
        counts_as_of = before.counts_as_of or answered
    loop_summary = LoopSummary(
        name=spec.name,
        desired_state=desired,
        state=state,
        state_since=since,
        replicas=expected,
        replicas_ready=sum(1 for r in replicas if r.state in _READY),
        pods=obs.pods_of(spec.name),
        iterations=iterations,
        iterations_per_second=round(sum(rates), 3) if rates else None,
        errors=errors,
        last_error=_cut(last_error),
        counts_as_of=counts_as_of,
        message=problem.text if problem is not None else None,
    )
    nodes: dict[str, NodeSummary] = {}
    for r in replicas:
        for n in r.nodes:
            cur = nodes.get(n.name)
            health = n.health
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
    return loop_summary, list(nodes.values())


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
    problems = pod_problems(obs.pods, obs.volume)
    warnings = queue_problems(workflow)
    for i in range(len(workflow.spec.loops)):
        loop_summary, node_summaries = _loop_summary(
            workflow, i, obs, before_loops, now, problems, previous.last_update_time
        )
        loops.append(loop_summary)
        nodes.extend(node_summaries)
    active = [lp for lp in loops if lp.desired_state is not DesiredState.STOPPED]
    # A finished loop waits for nothing: it counts with the ready ones.
    ready = [
        lp
        for lp in active
        if lp.state is LoopState.FINISHED
        or (lp.replicas_ready >= lp.replicas and lp.state is not LoopState.ERROR)
    ]
    errored = [lp.name for lp in active if lp.state is LoopState.ERROR]
    was_ready = any(c.type == "Ready" and c.status == "True" for c in previous.conditions)
    # Degraded by a pod's failure only: once it is fixed, a workflow never ready is Pending again.
    was_degraded = previous.phase is Phase.DEGRADED and not any(
        c.type == "Degraded" and c.reason in POD_REASONS for c in previous.conditions
    )
    if not active:
        phase, reason, message = Phase.STOPPED, "AllLoopsStopped", "every loop is stopped"
    elif all(lp.state is LoopState.FINISHED for lp in active):
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
        paused = all(lp.state is LoopState.PAUSED for lp in active)
        phase = Phase.PAUSED if paused else Phase.RUNNING
        reason = "AllLoopsPaused" if paused else "AllLoopsReady"
        message = f"{len(ready)}/{len(active)} loops ready"
    else:
        waiting = [lp.name for lp in active if lp not in ready]
        phase = Phase.DEGRADED if (was_ready or was_degraded) else Phase.PENDING
        reason = "LoopsNotReady" if phase is Phase.DEGRADED else "WaitingForLoops"
        message = f"waiting for loops: {', '.join(waiting)}"
    if problems:
        # The pods' own failure explains an unreachable hub or loops not ready, and says more.
        phase = Phase.DEGRADED
        reason, message = summary(problems)
    degraded_reason, degraded_message = (
        (reason, message) if phase is Phase.DEGRADED else ("AsExpected", "")
    )
    if phase is not Phase.DEGRADED and warnings:
        # It runs as asked, yet will never do anything: a warning beside Ready.
        degraded_reason, degraded_message = summary(warnings)
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
            degraded_reason != "AsExpected",
            degraded_reason,
            degraded_message,
            now,
            generation,
        ),
    ]
    # What `kubectl get` shows: what is wrong (Degraded), else what is awaited (Progressing).
    telling = next((c for c in (conditions[2], conditions[1]) if c.status == "True"), None)
    rates = [lp.iterations_per_second for lp in loops if lp.iterations_per_second is not None]
    return WorkflowResourceStatus(
        observed_generation=generation,
        phase=phase,
        ready=f"{len(ready)}/{len(active)}",
        loops_ready=len(ready),
        loops_total=len(active),
        iterations_per_second=round(sum(rates), 3) if rates else None,
        errors=sum(lp.errors for lp in loops),
        message=f"{telling.reason}: {telling.message}" if telling is not None else None,
        conditions=conditions,
        loops=loops,
        nodes=nodes,
        queues=list(obs.hub.queues) if obs.hub else [],
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
        message=_one_line(f"InvalidSpec: {msg}"),
        conditions=[
            _condition(before, "Ready", False, "InvalidSpec", msg, now, generation),
            _condition(before, "Progressing", False, "InvalidSpec", msg, now, generation),
            _condition(before, "Degraded", True, "InvalidSpec", msg, now, generation),
        ],
        last_update_time=now,
    )


def _one_line(text: str) -> str:
    """The lines joined with "; ", cut: a printer column shows one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return cut("; ".join(lines).replace(":; ", ": "))


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
