"""Admission: the runtime's own validation (`ostinato validate`) applied to a Workflow object.

The operator's image need not contain the users' node packages, so a node class named as
'package.module:Class' that cannot be imported here is not an error at admission: its import and
its config are checked when the loop starts (a warning says so). Everything else — structure,
ranges, names, duplicates, queues, built-in nodes' configs — is the runtime's check, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ostinato import FieldError, Workflow, WorkflowError, load_workflow

__all__ = ["Verdict", "check"]

# The hub's Service is "<name>-hub": a DNS-1035 label (starts with a letter, at most 63).
_SERVICE_SAFE = re.compile(r"^[a-z]([-a-z0-9]{0,57}[a-z0-9])?$")
_DOCUMENT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")


@dataclass
class Verdict:
    """Errors reject the object; warnings are shown by kubectl and let it pass."""

    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    workflow: Workflow | None = None

    @property
    def message(self) -> str:
        """The same text `ostinato validate` prints for a file, without the file name."""
        return str(WorkflowError(self.errors))


def _unimportable(err: FieldError) -> bool:
    return err.path.endswith(".class") and err.message.startswith("cannot import module")


def check(body: Mapping[str, Any]) -> Verdict:
    """Validate a Workflow object as the runtime would, minus imports of the users' classes."""
    doc = {k: body[k] for k in _DOCUMENT_KEYS if k in body}
    verdict = Verdict()
    name = str(body.get("metadata", {}).get("name") or "")
    if name and not _SERVICE_SAFE.match(name):
        verdict.errors.append(
            FieldError(
                "metadata.name",
                f"{name!r}: a Workflow's name must start with a letter and have at most 59 "
                "characters (its hub's Service is called <name>-hub)",
            )
        )
    try:
        plan = load_workflow(doc)
    except WorkflowError as exc:
        for err in exc.errors:
            if _unimportable(err):
                verdict.warnings.append(
                    f"{err.path}: not importable in the operator ({err.message}); checked "
                    "when the loop's pod starts"
                )
            else:
                verdict.errors.append(err)
        if not verdict.errors:
            # Only unimportable classes: the structure itself is valid.
            verdict.workflow = Workflow.model_validate(doc)
    else:
        verdict.workflow = plan.workflow
    if verdict.errors:
        verdict.workflow = None
    return verdict
