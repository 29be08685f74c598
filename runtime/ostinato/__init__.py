"""ostinato: a workflow orchestrator for continuous loops of Python nodes."""

from importlib.metadata import PackageNotFoundError, version

from ._builtins import CounterProducer, IntervalProducer, LogSink, SQLiteWriter
from ._decorators import blocking, non_blocking, producer
from ._engine import LoopManager
from ._handles import LoopHandle
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
from ._orchestrator import WorkflowOrchestrator
from ._plan import FieldError, LoopPlan, WorkflowError, WorkflowPlan, load_workflow
from ._security import ENV_VARS as CURVE_ENV_VARS
from ._security import CurveKeys, generate_keys
from ._spec import DesiredState, LoopSpec, QueueSpec, ResourcesSpec, Workflow, WorkflowSpec
from ._status import LoopState, LoopStatus, NodeHealth, NodeStatus, WorkflowStatus

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
