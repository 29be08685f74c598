"""ostinato's Kubernetes operator: runs Workflow resources as pods (built in a later issue)."""

from ostinato import Workflow

__all__ = ["Workflow"]
