"""The Workflow resource's .status as pydantic models: what the operator writes and the CRD says."""

from __future__ import annotations

import enum
from typing import Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ostinato import DesiredState, LoopState, NodeHealth, QueueStatus
from ostinato.lowlevel import MAX_ERROR_CHARS

__all__ = [
    "UNKNOWN",
    "Condition",
    "LoopSummary",
    "NodeSummary",
    "Phase",
    "ReportedState",
    "WorkflowResourceStatus",
]

#: A loop's state in status while the hub does not answer: the one state the runtime has not.
UNKNOWN: Final = "unknown"
#: What a loop's replicas report (the runtime's states), or unknown.
ReportedState: TypeAlias = LoopState | Literal["unknown"]

# Last errors are cut to the runtime's MAX_ERROR_CHARS (500), the length the hub sends them at:
# cutting them shorter here lost the end of a chained exception's message, its cause. fit()
# keeps .status small by leaving out node details (and then loops' errors) first.

#: Condition and status messages (a pod's failure with its cause) are cut to this many characters.
MAX_MESSAGE_CHARS = 400


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    DEGRADED = "Degraded"
    STOPPED = "Stopped"
    #: Every loop that is not stopped ended by itself (maxIterations, an exhausted producer).
    FINISHED = "Finished"
    FAILED = "Failed"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_Model):
    """A Kubernetes-style condition; `kubectl wait --for=condition=Ready` reads these."""

    type: str = Field(description="Ready, Progressing or Degraded.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase cause of the status, for machines.")
    message: str = Field("", description="Why, for people.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        None, description="metadata.generation this condition was computed for."
    )


class NodeSummary(_Model):
    """One node of one loop, summed over the loop's replicas."""

    loop: str
    name: str
    health: NodeHealth = Field(description="healthy, retrying or failing (the worst replica's).")
    calls: int = 0
    errors: int = 0
    last_error: str | None = Field(None, description=f"Truncated to {MAX_ERROR_CHARS} characters.")


class LoopSummary(_Model):
    """One loop, summed over its replicas."""

    name: str
    desired_state: DesiredState = Field(
        description="running, paused or stopped: spec.state and the "
        "loop's own state, the stricter one."
    )
    state: ReportedState = Field(
        description="What the replicas report: pending, running, paused, stopping, stopped, "
        "error (the least advanced replica's), finished when every replica ended by itself "
        "(maxIterations, an exhausted producer; its pods stay Succeeded and are not restarted), "
        "or unknown when the hub cannot be reached."
    )
    state_since: str | None = Field(
        None,
        description="When the reported state last changed (RFC 3339): when a pause, "
        "resume or stop took effect.",
    )
    replicas: int = Field(
        description="Replicas the spec asks for (0 when stopped); for an autoscaled loop, what "
        "the last decision asks for (the desired count, kept across operator restarts)."
    )
    replicas_ready: int = Field(0, description="Replicas the hub hears from in running or paused.")
    pods: int = Field(0, description="Pod objects that exist for this loop.")
    iterations: int = 0
    iterations_per_second: float | None = Field(
        None,
        description="From two reads of the hub's /status by the operator, one status interval "
        "apart, of the same hub (pod and restart) with the replicas connected in both; unset "
        "for a round after a hub restart and while the hub does not answer.",
    )
    errors: int = Field(0, description="Failed iterations, all replicas.")
    last_error: str | None = Field(None, description=f"Truncated to {MAX_ERROR_CHARS} characters.")
    counts_as_of: str | None = Field(
        None,
        description="Set while the hub does not answer: iterations, errors and lastError are "
        "the last known, from the hub's answer at this time (RFC 3339).",
    )
    message: str | None = Field(
        None,
        description="Why the loop's pods do not run, as 'Reason: message' (e.g. "
        "LoopCrashLooping with the container's last log line); unset when they do.",
    )


class WorkflowResourceStatus(_Model):
    """Written by the operator from the hub's /status and the pods; never holds secrets."""

    observed_generation: int | None = Field(
        None, description="metadata.generation the operator last acted on."
    )
    phase: Phase | None = Field(
        None, description="Pending, Running, Paused, Degraded, Stopped or Failed."
    )
    ready: str | None = Field(None, description="Loops ready / loops expected, e.g. '2/3'.")
    loops_ready: int | None = Field(None, description="Loops with every replica ready.")
    loops_total: int | None = Field(None, description="Loops not stopped.")
    iterations_per_second: float | None = Field(None, description="Sum over all loops.")
    errors: int | None = Field(None, description="Failed iterations, all loops.")
    message: str | None = Field(
        None,
        description="What needs attention, as 'Reason: message': the Degraded condition's when "
        "it is True, else the Progressing one's when True; unset when all is well. The "
        "MESSAGE column of `kubectl get`.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    loops: list[LoopSummary] = Field(default_factory=list)
    nodes: list[NodeSummary] = Field(default_factory=list)
    queues: list[QueueStatus] = Field(
        default_factory=list, description="The queues as the hub reports them."
    )
    hub_url: str | None = Field(None, description="Where the operator reads /status from.")
    last_update_time: str | None = Field(
        None,
        description="When this status was written: at least every statusRefreshSeconds while an "
        "operator runs, so an older time means the status is stale.",
    )
    truncated: str | None = Field(
        None, description="Set when details were left out to keep the status small; says which."
    )
