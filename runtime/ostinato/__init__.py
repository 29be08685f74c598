"""ostinato: a workflow orchestrator for continuous loops of Python nodes.

This is the surface for people writing nodes and workflows; tools built on the runtime (the
Kubernetes operator, benchmarks) find the rest in ``ostinato.lowlevel``. tests/spec/
test_public_names.py lists both, so a change to either is deliberate.
"""

import typing as _typing

from ._face import adopt as _adopt
from ._face import lazy_getattr as _lazy_getattr
from ._model._builtins import CounterProducer, IntervalProducer, LogSink, SQLiteWriter
from ._model._decorators import blocking, non_blocking, producer
from ._model._errors import FieldError, WorkflowError
from ._model._nodes import (
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
from ._model._plan import load_workflow
from ._model._spec import DesiredState, Workflow
from ._model._status import (
    LoopState,
    LoopStatus,
    NodeHealth,
    NodeStatus,
    QueueStatus,
    WorkflowStatus,
)
from ._model._version import __version__

if _typing.TYPE_CHECKING:
    from ._hosting._orchestrator import WorkflowOrchestrator

__all__ = [
    "BaseNode",
    "BlockingNode",
    "CounterProducer",
    "DesiredState",
    "FieldError",
    "IntervalProducer",
    "LogSink",
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
    "QueueStatus",
    "SQLiteWriter",
    "Workflow",
    "WorkflowError",
    "WorkflowOrchestrator",
    "WorkflowStatus",
    "__version__",
    "blocking",
    "load_workflow",
    "non_blocking",
    "producer",
]

_adopt(globals(), __all__, __name__)
# The orchestrator brings ZeroMQ: imported on first use, so validating a workflow loads none.
if not _typing.TYPE_CHECKING:  # type checkers see the real imports above, and no catch-all
    __getattr__ = _lazy_getattr(
        globals(),
        __name__,
        {"WorkflowOrchestrator": ("._hosting._orchestrator", "WorkflowOrchestrator")},
    )
