"""ostinato's Kubernetes operator: runs Workflow resources as a hub and one pod per loop replica."""

from ._crd import GROUP, KIND, PLURAL, VERSION
from ._settings import OperatorSettings

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "OperatorSettings"]
