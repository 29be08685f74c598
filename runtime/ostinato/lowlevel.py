"""The surface for tools and the operator: what they need of the runtime beyond ``ostinato``.

Programs built on ostinato (the Kubernetes operator, command-line tools) import from here, never
from the runtime's private modules, so those stay free to move. What is here is kept stable the
way ``ostinato``'s own names are, but is of no use to someone writing nodes and workflows.
"""

from ._http import ControlReply, ControlRequest
from ._plan import errors_from_pydantic
from ._status import MAX_ERROR_CHARS, replica_key, truncate

__all__ = [
    "MAX_ERROR_CHARS",
    "ControlReply",
    "ControlRequest",
    "errors_from_pydantic",
    "replica_key",
    "truncate",
]
