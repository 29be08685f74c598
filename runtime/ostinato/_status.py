"""Loop and node state, and the status snapshots every pool reports in one JSON shape."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "LoopState",
    "LoopStatus",
    "NodeHealth",
    "NodeStatus",
    "QueueStatus",
    "WorkflowStatus",
    "truncate",
]

#: Error texts in status are cut to this many characters so status stays small.
MAX_ERROR_CHARS = 500


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LoopState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


class NodeHealth(enum.StrEnum):
    HEALTHY = "healthy"
    RETRYING = "retrying"
    FAILING = "failing"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class NodeStatus(_Model):
    name: str
    kind: str
    health: NodeHealth = NodeHealth.HEALTHY
    calls: int = Field(0, description="Calls that finished, successful or failed after retries.")
    errors: int = Field(0, description="Calls that still failed after their retries.")
    retries: int = Field(0, description="Retry attempts made.")
    in_flight: int = Field(0, description="Non-blocking calls pending now.")
    dropped: int = Field(0, description="Non-blocking calls dropped because maxInFlight was full.")
    last_error: str | None = None
    counters: dict[str, int] = Field(default_factory=dict)


class LoopStatus(_Model):
    name: str
    replica: int = Field(0, description="Which copy of the loop (spec.loops[].replicas).")
    pool: str
    state: LoopState = LoopState.PENDING
    reason: str | None = Field(None, description="Why the loop is in its state, when not obvious.")
    iterations: int = Field(0, description="Iterations finished (failed ones included).")
    failed_iterations: int = 0
    last_error: str | None = None
    restarts: int = Field(0, description="Process loops: times the process was restarted.")
    pid: int | None = None
    drained: int = Field(0, description="Non-blocking calls that finished during the stop drain.")
    abandoned: int = Field(0, description="Non-blocking calls still pending at the drain timeout.")
    nodes: list[NodeStatus] = Field(default_factory=list)

    def node(self, name: str) -> NodeStatus:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"loop {self.name!r} has no node {name!r}")


class QueueStatus(_Model):
    name: str
    depth: int = Field(0, description="Messages waiting in the fullest consumer group.")
    enqueued: int = 0
    delivered: int = 0
    acknowledged: int = 0
    dropped: int = 0
    redelivered: int = 0
    refused: int = Field(0, description="Messages refused (larger than maxMessageBytes).")


class WorkflowStatus(_Model):
    workflow: str
    loops: list[LoopStatus]
    queues: list[QueueStatus] = Field(default_factory=list)

    def loop(self, name: str) -> LoopStatus:
        for loop in self.loops:
            if loop.name == name:
                return loop
        raise KeyError(f"workflow {self.workflow!r} has no loop {name!r}")
