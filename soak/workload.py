"""The soak's workflow: counted traffic shaped like examples/k8s-pipeline.yaml.

Writer replicas stamp each message (their incarnation, a sequence number) and send it, with
blocking writers, to a durable work queue read by two worker replicas and to a durable
broadcast queue read by a monitor loop; then they record it as acknowledged. Every reader
records what it gets (``soak.nodes``). Both queues block when full, so nothing is dropped by
policy: whatever a writer recorded as acknowledged must reach a reader.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["QUEUES", "WorkloadSettings", "document", "loop_replicas"]

#: Queue -> how its readers are grouped: the work queue's readers are one group; each loop that
#: reads the broadcast queue is a group of its own and gets every message.
QUEUES: dict[str, Literal["work", "broadcast"]] = {"jobs": "work", "events": "broadcast"}
NAME = "soak"


class WorkloadSettings(BaseModel):
    """How much traffic, from how many loops."""

    messages_per_second: float = Field(
        750.0,
        gt=0,
        description="Messages a second received end to end (both queues). 1,000,000 in 30 "
        "minutes needs 556; the rest is room for the time faults cost.",
    )
    writers: int = Field(
        3, ge=1, description="Writer replicas: a writer pod down costs a third of the rate."
    )
    workers: int = Field(2, ge=2, description="Replicas reading the work queue.")
    pad_bytes: int = Field(64, ge=0, description="Filler per message, bytes.")
    capacity: int = Field(1000, ge=1, description="Each queue's capacity (onFull: block).")
    pool: Literal["thread", "process"] = Field(
        "thread", description="process under `ostinato run`, so children can be killed"
    )

    @property
    def period_seconds(self) -> float:
        """Each writer's tick period: every tick is one message on each of the two queues."""
        return self.writers * len(QUEUES) / self.messages_per_second


def loop_replicas(settings: WorkloadSettings) -> dict[str, int]:
    return {"writer": settings.writers, "worker": settings.workers, "monitor": 1}


def document(settings: WorkloadSettings, records_dir: str, name: str = NAME) -> dict[str, Any]:
    """The Workflow document; ``records_dir`` as the loops see it (a pod's mount path)."""
    records = {"recordsDir": records_dir}
    # A loop process killed again and again must come back at once, not after a growing
    # back-off: the soak measures how fast a fault heals.
    restart = {"initialBackoffSeconds": 0.5, "maxBackoffSeconds": 2, "resetAfterSeconds": 10}
    retry = {"maxAttempts": 5, "initialBackoffSeconds": 0.05}
    common = {"pool": settings.pool, "restart": restart}
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "queues": [
                {
                    "name": queue,
                    "mode": mode,
                    "capacity": settings.capacity,
                    "onFull": "block",
                    "durable": True,
                }
                for queue, mode in QUEUES.items()
            ],
            "loops": [
                {
                    "name": "writer",
                    **common,
                    "replicas": settings.writers,
                    "producer": {
                        "name": "tick",
                        "class": "IntervalProducer",
                        "config": {"periodSeconds": round(settings.period_seconds, 6)},
                    },
                    "nodes": [
                        {
                            "name": "stamp",
                            "kind": "blocking",
                            "class": "soak.nodes:Stamp",
                            "config": {**records, "padBytes": settings.pad_bytes},
                            "retry": retry,
                        },
                        {"name": "job", "kind": "blocking", "queue": {"write": "jobs"}},
                        {"name": "event", "kind": "blocking", "queue": {"write": "events"}},
                        {
                            "name": "acked",
                            "kind": "blocking",
                            "class": "soak.nodes:Acked",
                            "retry": retry,
                        },
                    ],
                },
                {
                    "name": "worker",
                    **common,
                    "replicas": settings.workers,
                    "producer": {
                        "name": "jobs",
                        "queue": {"read": "jobs"},
                        "config": {"prefetch": 16},
                    },
                    "nodes": [_receipt(records, retry)],
                },
                {
                    "name": "monitor",
                    **common,
                    "producer": {
                        "name": "events",
                        "queue": {"read": "events"},
                        "config": {"prefetch": 64},
                    },
                    "nodes": [_receipt(records, retry)],
                },
            ],
        },
    }


def _receipt(records: dict[str, str], retry: dict[str, float]) -> dict[str, Any]:
    return {
        "name": "receipt",
        "kind": "blocking",
        "class": "soak.nodes:Receipt",
        "config": records,
        "retry": retry,
    }
