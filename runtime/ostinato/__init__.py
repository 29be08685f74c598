"""ostinato: a workflow orchestrator for continuous loops of Python nodes."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ._builtins import CounterProducer, IntervalProducer, LogSink, SQLiteWriter
from ._decorators import blocking, non_blocking, producer
from ._engine import LoopManager
from ._nodes import (
    BaseNode,
    BlockingNode,
    NodeConfig,
    NodeContext,
    NodeData,
    NodeKind,
    NonBlockingNode,
    ProducerExhausted,
    ProducerNode,
)
from ._plan import FieldError, LoopPlan, WorkflowError, WorkflowPlan, load_workflow
from ._spec import DesiredState, LoopSpec, QueueSpec, ResourcesSpec, Workflow, WorkflowSpec
from ._status import LoopState, LoopStatus, NodeHealth, NodeStatus, QueueStatus, WorkflowStatus

if TYPE_CHECKING:
    from ._handles import LoopHandle
    from ._orchestrator import WorkflowOrchestrator
    from ._security import ENV_VARS as CURVE_ENV_VARS
    from ._security import CurveKeys, generate_keys

#: Names whose modules import ZeroMQ, imported on first use: writing nodes, validating a
#: workflow (`ostinato validate`, the operator's admission webhook) or building its plan loads
#: no ZeroMQ (tests/spec/test_no_zmq.py).
_LAZY = {
    "LoopHandle": ("._handles", "LoopHandle"),
    "WorkflowOrchestrator": ("._orchestrator", "WorkflowOrchestrator"),
    "CURVE_ENV_VARS": ("._security", "ENV_VARS"),
    "CurveKeys": ("._security", "CurveKeys"),
    "generate_keys": ("._security", "generate_keys"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ostinato' has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), attr)
    globals()[name] = value
    return value


try:
    __version__ = version("ostinato")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CURVE_ENV_VARS",
    "BaseNode",
    "BlockingNode",
    "CounterProducer",
    "CurveKeys",
    "DesiredState",
    "FieldError",
    "IntervalProducer",
    "LogSink",
    "LoopHandle",
    "LoopManager",
    "LoopPlan",
    "LoopSpec",
    "LoopState",
    "LoopStatus",
    "NodeConfig",
    "NodeContext",
    "NodeData",
    "NodeHealth",
    "NodeKind",
    "NodeStatus",
    "NonBlockingNode",
    "ProducerExhausted",
    "ProducerNode",
    "QueueSpec",
    "QueueStatus",
    "ResourcesSpec",
    "SQLiteWriter",
    "Workflow",
    "WorkflowError",
    "WorkflowOrchestrator",
    "WorkflowPlan",
    "WorkflowSpec",
    "WorkflowStatus",
    "__version__",
    "blocking",
    "generate_keys",
    "load_workflow",
    "non_blocking",
    "producer",
]
