"""Autoscaled loops on Kubernetes: the runtime's own decision, on the hub's backlog, as pod counts.

Each status round samples the hub's /status (the queue each autoscaled loop reads) and calls
``ostinato.lowlevel.decide`` with what it returned last time, exactly as `ostinato run` does;
the desired counts then say how many pods the loop has (``replica_count``). They survive an
operator restart through ``status.loops[].replicas``, which the next operator reads back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ostinato import Workflow, WorkflowStatus
from ostinato.lowlevel import LoopSpec, ScaleDecision, ScaleState, decide, sample_of

__all__ = ["Scaling", "replica_count", "scaled_from_status"]


def replica_count(loop: LoopSpec, scaled: Mapping[str, int]) -> int:
    """The pods a loop that is not stopped has: its replicas, or for an autoscaled loop the
    last decision (``scaled``), within minReplicas..maxReplicas (its minimum when none yet)."""
    scale = loop.autoscale
    if scale is None:
        return loop.max_replicas
    return scale.bounded(scaled.get(loop.name, scale.min_replicas))


def scaled_from_status(status: Mapping[str, Any] | None) -> dict[str, int]:
    """``status.loops[].replicas`` by loop: what an earlier operator decided (a restart keeps
    it); {} for a status that has none or is not ours."""
    out: dict[str, int] = {}
    loops = (status or {}).get("loops")
    if not isinstance(loops, list):
        return out
    for lp in loops:
        if isinstance(lp, dict) and isinstance(lp.get("name"), str):
            replicas = lp.get("replicas")
            if isinstance(replicas, int) and not isinstance(replicas, bool):
                out[lp["name"]] = replicas
    return out


@dataclass
class Scaling:
    """One Workflow's autoscaling between rounds: each loop's decision state and counts."""

    #: Desired replicas by autoscaled loop (None: not known yet; read from the status).
    desired: dict[str, int] | None = None
    states: dict[str, ScaleState] = field(default_factory=dict)
    last: dict[str, ScaleDecision] = field(default_factory=dict)

    def counts(self, status: Mapping[str, Any] | None) -> dict[str, int]:
        if self.desired is None:
            self.desired = scaled_from_status(status)
        return dict(self.desired)

    def round(
        self,
        workflow: Workflow,
        hub: WorkflowStatus,
        at_seconds: float,
        running: Mapping[str, int],
        skip: Sequence[str] = (),
    ) -> list[tuple[str, ScaleDecision]]:
        """Decide for every autoscaled loop not in ``skip`` (stopped ones) whose interval has
        passed; returns (loop, decision) of those that change its count. ``running``: pods by
        loop."""
        assert self.desired is not None, "counts() first"
        queues = {q.name: q for q in hub.queues}
        changed = []
        for loop in workflow.spec.loops:
            scale, read = loop.autoscale, loop.read_queue
            if scale is None or read is None or loop.name in skip:
                continue
            queue = queues.get(read)
            state = self.states.get(loop.name)
            if state is None:  # start from what was decided before (a restarted operator)
                state = ScaleState(desired=replica_count(loop, self.desired))
            last = state.last
            if queue is None or (
                last is not None and at_seconds - last.at_seconds < scale.interval_seconds * 0.9
            ):
                continue
            decision = decide(scale, sample_of(queue, at_seconds), running.get(loop.name, 0), state)
            self.states[loop.name] = decision.state
            self.last[loop.name] = decision
            self.desired[loop.name] = decision.desired
            if decision.changed:
                changed.append((loop.name, decision))
        return changed
