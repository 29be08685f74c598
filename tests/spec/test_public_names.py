"""The public surface, listed: `ostinato` for people writing nodes and workflows, and
`ostinato.lowlevel` for tools. Adding, removing or moving a name fails here first, so a change
to either face is a decision, not a side effect. What they export says it lives there."""

from __future__ import annotations

import enum
import types

import ostinato
import ostinato.lowlevel

USER = {
    # writing nodes
    "BaseNode", "BlockingNode", "NonBlockingNode", "ProducerNode", "NodeConfig", "NodeContext",
    "NodeData", "NodeKind", "ProducerExhausted", "blocking", "non_blocking", "producer",
    # the built-in nodes
    "CounterProducer", "IntervalProducer", "LogSink", "SQLiteWriter",
    # workflows: load, check, run, observe
    "Workflow", "load_workflow", "FieldError", "WorkflowError", "WorkflowOrchestrator",
    "DesiredState", "LoopState", "NodeHealth", "WorkflowStatus", "LoopStatus", "NodeStatus",
    "QueueStatus", "__version__",
}  # fmt: skip
TOOLS = {
    # the engine and plans
    "LoopManager", "LoopPlan", "WorkflowPlan", "LoopHandle",
    # the spec's parts (the operator builds its CRD from WorkflowSpec)
    "WorkflowSpec", "LoopSpec", "QueueSpec", "ResourcesSpec",
    # CURVE keys and the control token, as the operator makes them for a workflow's Secret
    "CURVE_ENV_VARS", "CurveKeys", "generate_keys", "CONTROL_TOKEN_ENV", "generate_control_token",
    # control and status plumbing the operator shares with the hub
    "ControlRequest", "ControlReply", "errors_from_pydantic", "MAX_ERROR_CHARS", "replica_key",
    "truncate",
    # the autoscaling decision both hosts make (the orchestrator and the operator)
    "AutoscaleSpec", "BacklogSample", "ScaleDecision", "ScaleState", "decide", "sample_of",
    # the HTTP client of /status and /control, which the operator uses to reach a hub
    "request_json", "ServerError",
}  # fmt: skip


def test_the_user_face_is_exactly_this() -> None:
    assert set(ostinato.__all__) == USER
    assert not set(ostinato.__all__) & TOOLS


def test_the_tools_face_is_exactly_this() -> None:
    assert set(ostinato.lowlevel.__all__) == TOOLS


def test_every_listed_name_exists_and_reports_its_face() -> None:
    for face in (ostinato, ostinato.lowlevel):
        for name in face.__all__:
            obj = getattr(face, name)
            if isinstance(obj, type | types.FunctionType) and not isinstance(obj, enum.Enum):
                assert obj.__module__ == face.__name__, (name, obj.__module__)


def test_nothing_else_is_a_public_attribute_of_the_user_face() -> None:
    """What the face imports for itself goes by an underscore; ``lowlevel`` is the submodule
    Python binds once imported."""
    public = {n for n in vars(ostinato) if not n.startswith("_")} - {"lowlevel"}
    assert public <= USER, public - USER
