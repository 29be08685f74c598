"""The surface for tools and the operator: what they need of the runtime beyond ``ostinato``.

Programs built on ostinato (the Kubernetes operator, command-line tools, benchmarks) import from
here, never from the runtime's private modules, so those stay free to move. What is here is
kept stable the way ``ostinato``'s own names are, but is of no use to someone writing nodes and
workflows: the loop engine and plans, the spec's parts, the CURVE keys and the control token,
the control models.
"""

from typing import TYPE_CHECKING

from ._engine._loop import LoopManager
from ._face import adopt, lazy_getattr
from ._messaging._token import CONTROL_TOKEN_ENV, generate_control_token
from ._model._autoscale import BacklogSample, ScaleDecision, ScaleState, decide, sample_of
from ._model._errors import errors_from_pydantic
from ._model._plan import LoopPlan, WorkflowPlan
from ._model._spec import AutoscaleSpec, LoopSpec, QueueSpec, ResourcesSpec, WorkflowSpec
from ._model._status import MAX_ERROR_CHARS, replica_key, truncate
from ._observe._client import ServerError, request_json
from ._observe._http import ControlReply, ControlRequest

if TYPE_CHECKING:
    from ._hosting._handles import LoopHandle
    from ._messaging._security import ENV_VARS as CURVE_ENV_VARS
    from ._messaging._security import CurveKeys, generate_keys

__all__ = [
    "CONTROL_TOKEN_ENV",
    "CURVE_ENV_VARS",
    "MAX_ERROR_CHARS",
    "AutoscaleSpec",
    "BacklogSample",
    "ControlReply",
    "ControlRequest",
    "CurveKeys",
    "LoopHandle",
    "LoopManager",
    "LoopPlan",
    "LoopSpec",
    "QueueSpec",
    "ResourcesSpec",
    "ScaleDecision",
    "ScaleState",
    "ServerError",
    "WorkflowPlan",
    "WorkflowSpec",
    "decide",
    "errors_from_pydantic",
    "generate_control_token",
    "generate_keys",
    "replica_key",
    "request_json",
    "sample_of",
    "truncate",
]

adopt(globals(), __all__, __name__)
# These bring ZeroMQ: imported on first use, so the admission webhook's validation loads none.
if not TYPE_CHECKING:  # type checkers see the real imports above, and no catch-all
    __getattr__ = lazy_getattr(
        globals(),
        __name__,
        {
            "LoopHandle": ("._hosting._handles", "LoopHandle"),
            "CURVE_ENV_VARS": ("._messaging._security", "ENV_VARS"),
            "CurveKeys": ("._messaging._security", "CurveKeys"),
            "generate_keys": ("._messaging._security", "generate_keys"),
        },
    )
