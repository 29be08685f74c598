"""The workflow document as pydantic models: one format for `ostinato run` and `kubectl apply`."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "API_VERSION",
    "NAME_PATTERN",
    "WORKFLOW_NAME_PATTERN",
    "AutoscaleSpec",
    "CircuitBreakerSpec",
    "DesiredState",
    "ErrorPolicy",
    "LoopSpec",
    "Metadata",
    "NodeSpec",
    "OnFull",
    "Pool",
    "QueueBatch",
    "QueueMode",
    "QueueOnFull",
    "QueueRef",
    "QueueSpec",
    "ResourcesSpec",
    "RestartSpec",
    "RetrySpec",
    "Workflow",
    "WorkflowSpec",
]

API_VERSION = "ostinato.dev/v1alpha1"

#: Names become Kubernetes object names and label values: DNS-1123 labels.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=63),
    Field(description="A DNS-1123 label: lower-case letters, digits and '-', at most 63."),
]


#: A Workflow's name also names its hub's Service on Kubernetes, "<name>-hub": a DNS-1035
#: label, so it starts with a letter and leaves four characters for the suffix. Checked here,
#: not only by the operator, so that `ostinato validate` refuses what `kubectl apply` would.
WORKFLOW_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,57}[a-z0-9])?$"


def _service_safe(name: str) -> str:
    if not re.match(WORKFLOW_NAME_PATTERN, name):
        raise ValueError(
            f"{name!r}: a Workflow's name must start with a letter and have at most 59 "
            "characters (its hub's Service is called <name>-hub)"
        )
    return name


def _whole(value: Any) -> Any:
    """3.0 -> 3 (the API server's reading of a JSON number); anything else as it came."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: The largest integer Kubernetes stores (int64): a larger one is refused, not silently kept.
INT64_MAX = 2**63 - 1
#: The workflow's own numbers and switches are typed as the CRD declares them, so a document
#: means the same to `ostinato run` as to the API server: no "3" or 2.5 or true for an integer,
#: no "0.1" for a number (an integer is one), no "yes" or 1 for a boolean. A number with no
#: fraction (3.0) is an integer, as it is to the API server (it stores 3), within int64.
# Each integer field has an upper bound (`le`), INT64_MAX where nothing smaller makes sense.
Int = Annotated[int, Strict(), BeforeValidator(_whole)]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class _Model(BaseModel):
    model_config = ConfigDict(
        # Only the camelCase names: the API server would silently drop snake_case keys, so a
        # document that runs locally must not rely on them.
        extra="forbid",
        alias_generator=to_camel,
        frozen=True,
        # inf and nan: JSON (a process loop's document, the API server) cannot carry them.
        allow_inf_nan=False,
    )


class Pool(enum.StrEnum):
    THREAD = "thread"
    ASYNCIO = "asyncio"
    PROCESS = "process"


class ErrorPolicy(enum.StrEnum):
    SKIP_ITERATION = "skipIteration"
    CONTINUE = "continue"
    PAUSE_LOOP = "pauseLoop"
    STOP_LOOP = "stopLoop"


class OnFull(enum.StrEnum):
    BLOCK = "block"
    DROP = "drop"


class QueueMode(enum.StrEnum):
    BROADCAST = "broadcast"
    WORK = "work"


class QueueOnFull(enum.StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "dropOldest"
    DROP_NEWEST = "dropNewest"


class DesiredState(enum.StrEnum):
    """What the user wants a loop (or the whole workflow) to do; a spec field, not a status."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"

    @staticmethod
    def combine(workflow: DesiredState, loop: DesiredState) -> DesiredState:
        """The stricter of the two: stopped beats paused beats running."""
        order = [DesiredState.RUNNING, DesiredState.PAUSED, DesiredState.STOPPED]
        return max(workflow, loop, key=order.index)


#: A Kubernetes resource quantity ("500m", "1", "256Mi", "1.5Gi").
Quantity = Annotated[
    str,
    StringConstraints(
        pattern=r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$", min_length=1, max_length=64
    ),
]


class ResourcesSpec(_Model):
    """CPU and memory for a loop's pod on Kubernetes (ignored by `ostinato run`)."""

    requests: dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity] = Field(
        default_factory=dict,
        description="What the scheduler reserves, e.g. {cpu: 100m, memory: 128Mi}.",
    )
    limits: dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity] = Field(
        default_factory=dict,
        description="The most the loop's container may use, e.g. {cpu: '1', memory: 512Mi}.",
    )


class RetrySpec(_Model):
    """How a failing node call is retried before its onError policy applies."""

    max_attempts: Int = Field(
        1, ge=1, le=1000, description="Calls in all, the first included; 1 means no retry."
    )
    initial_backoff_seconds: Float = Field(
        0.1, ge=0, description="Wait before the first retry, in seconds; doubles after each."
    )
    max_backoff_seconds: Float = Field(
        10.0, ge=0, description="Cap on the wait between retries, in seconds."
    )
    multiplier: Float = Field(2.0, ge=1, description="Factor applied to the wait after each retry.")
    jitter: Float = Field(
        0.1, ge=0, le=1, description="Random fraction added to each wait so retries spread out."
    )


class QueueBatch(_Model):
    """A reader that takes several messages an iteration: its node gets a list of payloads."""

    max_messages: Int = Field(
        ge=1, le=100_000, description="The most messages one iteration takes."
    )
    max_wait_seconds: Float = Field(
        0.0,
        ge=0,
        le=60,
        description="How long an iteration that has its first message waits for more, in "
        "seconds; 0 takes what has arrived and waits for nothing more.",
    )


class QueueRef(_Model):
    """Makes the node a queue node: it reads or writes a queue declared in spec.queues."""

    read: Name | None = Field(None, description="Name of the queue this node reads.")
    write: Name | None = Field(None, description="Name of the queue this node writes.")
    batch: QueueBatch | None = Field(
        None,
        description="Readers: take up to maxMessages messages an iteration, acknowledged "
        "together when it ends; the node gets a list of payloads.",
    )
    split: Bool = Field(
        False,
        description="Writers: the payload is a list, written as one message per item.",
    )


class NodeSpec(_Model):
    """One node of a loop: its class, its kind, its configuration and its error handling."""

    name: Name = Field(description="Unique within the loop.")
    class_: str | None = Field(
        None,
        alias="class",
        description="Import path 'package.module:Class', or the name of a built-in node.",
    )
    kind: Literal["producer", "blocking", "nonBlocking"] | None = Field(
        None, description="How the loop runs it; must be one the class supports."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Validated by the node class's own config model."
    )
    queue: QueueRef | None = Field(None, description="Makes this a queue reader or writer.")
    retry: RetrySpec = Field(default_factory=RetrySpec)
    on_error: ErrorPolicy = Field(
        ErrorPolicy.SKIP_ITERATION,
        description="What happens when the node still fails after its retries.",
    )
    max_in_flight: Int = Field(
        16,
        ge=1,
        le=100_000,
        description="Non-blocking only: calls of this node pending at once before onFull applies.",
    )
    on_full: OnFull = Field(
        OnFull.BLOCK,
        description="Non-blocking only: 'block' waits for a free slot (nothing lost), 'drop' "
        "skips the call and counts it.",
    )


class CircuitBreakerSpec(_Model):
    """Pauses a loop after consecutive failed iterations and resumes it after a cool-down."""

    consecutive_failures: Int = Field(
        ge=1, le=INT64_MAX, description="Failed iterations in a row that open it."
    )
    cooldown_seconds: Float = Field(
        30.0, gt=0, description="How long the loop stays paused before it tries again, seconds."
    )


class RestartSpec(_Model):
    """How a crashed process loop is restarted."""

    initial_backoff_seconds: Float = Field(
        0.5, ge=0, description="Wait before the first restart, seconds; doubles after each crash."
    )
    max_backoff_seconds: Float = Field(
        30.0, ge=0, description="Cap on the wait between restarts, seconds."
    )
    reset_after_seconds: Float = Field(
        60.0,
        gt=0,
        description="A loop that ran this long without crashing starts over at the "
        "initial backoff.",
    )


class AutoscaleSpec(_Model):
    """Replicas of a work-queue reader that follow the hub's backlog of its queue."""

    min_replicas: Int = Field(
        1,
        ge=0,
        le=1000,
        description="The fewest replicas; 0 lets an idle loop scale to none (the first "
        "message starts one).",
    )
    max_replicas: Int = Field(ge=1, le=1000, description="The most replicas.")
    target_backlog_per_replica: Int = Field(
        100,
        ge=1,
        le=INT64_MAX,
        description="Messages of the loop's queue (waiting in the hub or delivered and not "
        "yet acknowledged) per replica: the backlog divided by this is the replicas wanted.",
    )
    scale_up_cooldown_seconds: Float = Field(
        5.0,
        ge=0,
        le=3600,
        description="After a scale-up, how long before the next one, seconds (a scale-up "
        "from zero replicas never waits).",
    )
    scale_down_delay_seconds: Float = Field(
        30.0,
        ge=0,
        le=86400,
        description="How long the backlog must want fewer replicas before they go, seconds; "
        "the most wanted over that time is kept.",
    )
    interval_seconds: Float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the backlog is sampled, seconds (on Kubernetes: at most as "
        "often as the operator's statusIntervalSeconds).",
    )

    def bounded(self, replicas: int) -> int:
        """``replicas`` within minReplicas..maxReplicas."""
        return max(self.min_replicas, min(self.max_replicas, replicas))


class LoopSpec(_Model):
    """One loop: a producer, an ordered chain of nodes, the pool it runs in, its settings."""

    name: Name = Field(description="Unique within the workflow.")
    pool: Pool = Field(Pool.THREAD, description="thread, asyncio or process.")
    producer: NodeSpec | None = Field(None, description="The node that starts each iteration.")
    nodes: list[NodeSpec] = Field(
        default_factory=list, description="Blocking and non-blocking nodes, in chain order."
    )
    # The bounds inside the Optional, as for maxIterations below, so the CRD has them.
    replicas: Annotated[int, Field(ge=1, le=1000), Strict(), BeforeValidator(_whole)] | None = (
        Field(
            None,
            description="Copies of the loop that run at once; a work queue spreads its "
            "messages over them, a broadcast queue gives each message to one of them. Unset: "
            "1, or as many as autoscale decides (the two are exclusive).",
        )
    )
    autoscale: AutoscaleSpec | None = Field(
        None,
        description="Replicas that follow the backlog of the work queue the producer reads, "
        "between minReplicas and maxReplicas; exclusive with replicas.",
    )
    # The bounds on the int itself, inside the Optional and before Int's conversion: pydantic
    # would not otherwise write them into the JSON schema (and the CRD) as minimum and maximum.
    max_iterations: (
        Annotated[int, Field(ge=1, le=INT64_MAX), Strict(), BeforeValidator(_whole)] | None
    ) = Field(
        None,
        description="Stop the loop after this many iterations; unset runs forever.",
    )
    drain_timeout_seconds: Float = Field(
        10.0, ge=0, description="On stop, how long pending non-blocking calls may finish, seconds."
    )
    side_effect_workers: Int = Field(
        4, ge=1, le=1024, description="Threads that run this loop's sync non-blocking calls."
    )
    event_loop: Name | None = Field(
        None,
        description="asyncio pool only: asyncio loops naming the same event loop share its "
        "thread; unset gives the loop an event loop of its own.",
    )
    circuit_breaker: CircuitBreakerSpec | None = None
    restart: RestartSpec = Field(default_factory=RestartSpec)
    heartbeat_seconds: Float = Field(
        1.0, gt=0, le=60, description="Process loops: how often the loop reports its state."
    )
    state: DesiredState = Field(
        DesiredState.RUNNING,
        description="running, paused (kept warm, iterations wait) or stopped (not run; on "
        "Kubernetes its pods are removed). The stricter of this and spec.state applies.",
    )
    image: str | None = Field(
        None,
        min_length=1,
        description="Kubernetes only: the container image of this loop's pods (your nodes "
        "installed on top of the ostinato image); unset uses spec.image.",
    )
    resources: ResourcesSpec | None = Field(
        None, description="Kubernetes only: requests and limits of this loop's pods."
    )

    @property
    def max_replicas(self) -> int:
        """The most replicas this loop runs: autoscale's maxReplicas, else replicas (1 unset)."""
        if self.autoscale is not None:
            return self.autoscale.max_replicas
        return 1 if self.replicas is None else self.replicas

    @property
    def read_queue(self) -> str | None:
        """The queue its producer reads (None: a producer that reads none)."""
        ref = self.producer.queue if self.producer is not None else None
        return ref.read if ref is not None else None

    @property
    def initial_replicas(self) -> int:
        """The replicas started with the loop: autoscale's minReplicas, else replicas."""
        if self.autoscale is not None:
            return self.autoscale.min_replicas
        return self.max_replicas


class QueueSpec(_Model):
    """A queue that carries data from the loops that write it to the loops that read it."""

    name: Name
    mode: QueueMode = Field(
        QueueMode.BROADCAST,
        description="broadcast: every reading loop gets each message; work: one replica does.",
    )
    capacity: Int = Field(
        1000,
        ge=1,
        le=INT64_MAX,
        description="Messages waiting per consumer group (each reading loop in "
        "broadcast mode, all readers together in work mode).",
    )
    on_full: QueueOnFull = Field(QueueOnFull.BLOCK, description="block, dropOldest or dropNewest.")
    durable: Bool = Field(False, description="Persist messages (SQLite) before acknowledging.")
    max_message_bytes: Int = Field(
        1 << 20,
        ge=1,
        le=64 << 20,
        description="Larger messages are refused with an error to the writer; at most 64 MiB.",
    )


class WorkflowSpec(_Model):
    loops: list[LoopSpec] = Field(min_length=1, description="The workflow's loops.")
    queues: list[QueueSpec] = Field(default_factory=list, description="Queues loops share.")
    state: DesiredState = Field(
        DesiredState.RUNNING,
        description="running, paused or stopped for every loop at once; a loop's own state "
        "can only make it stricter.",
    )
    image: str | None = Field(
        None,
        min_length=1,
        description="Kubernetes only: the container image of the hub and of loops that name "
        "none; unset uses the operator's default image.",
    )


class Metadata(BaseModel):
    """Kubernetes object metadata; fields the API server adds are kept and ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[Name, AfterValidator(_service_safe)]
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Workflow(BaseModel):
    """A workflow document: a Kubernetes manifest and a local workflow file at once."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["ostinato.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Workflow"]
    metadata: Metadata
    spec: WorkflowSpec
    status: dict[str, Any] | None = Field(None, description="Written by the operator; ignored.")
