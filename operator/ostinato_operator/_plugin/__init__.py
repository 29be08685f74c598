"""`kubectl ostinato` (and `ostinato k8s`): the daily verbs on Workflow resources, by loop name."""

from ._cli import main

__all__ = ["main"]
