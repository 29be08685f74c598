"""Admission: the runtime's own validation (`ostinato validate`) applied to a Workflow object,
plus what only the operator knows: its pod budget, and the fields the API server pruned.

The operator's image need not contain the users' node packages, so a node class named as
'package.module:Class' that cannot be imported here is not an error at admission: its import and
its config are checked when the loop starts (a warning says so). Everything else — structure,
ranges, names, duplicates, queues, built-in nodes' configs — is the runtime's check, unchanged.

The same check runs in the webhook and in the operator before it makes any child, so a Workflow
over the budget gets a Failed status instead of pods when the webhook is off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from ostinato import DesiredState, FieldError, Workflow, WorkflowError, load_workflow
from ostinato.lowlevel import errors_from_pydantic

__all__ = ["LAST_APPLIED", "Verdict", "check", "loop_pod_count", "sent_document"]

#: Where `kubectl apply` keeps the document it sent, unknown fields and all.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

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


def loop_pod_count(workflow: Workflow) -> dict[str, int]:
    """Loop name -> the pods the operator makes for it: its replicas, none when stopped."""
    return {
        loop.name: loop.max_replicas
        for loop in workflow.spec.loops
        if DesiredState.combine(workflow.spec.state, loop.state) is not DesiredState.STOPPED
    }


def _over_budget(workflow: Workflow, max_pods_per_workflow: int) -> FieldError | None:
    pods = loop_pod_count(workflow)
    total = sum(pods.values())
    if total <= max_pods_per_workflow:
        return None
    each = ", ".join(f"{name} {count}" for name, count in pods.items())
    return FieldError(
        "spec.loops",
        f"{total} loop pods ({each}) exceed maxPodsPerWorkflow, the operator's limit of "
        f"{max_pods_per_workflow} loop pods per Workflow: lower replicas, stop loops, or "
        "raise maxPodsPerWorkflow (chart value operator.maxPodsPerWorkflow)",
    )


def sent_document(
    body: Mapping[str, Any], old: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The document the client sent in this request, when it left a copy: `kubectl apply`
    records it in an annotation, unknown fields included (the API server prunes those from the
    object before any webhook sees it). None when this request did not write that copy."""
    text = (body.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    if (
        old is not None
        and (old.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED) == text
    ):
        return None  # an older apply's copy: not what this request sent
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _unknown_fields(sent: Mapping[str, Any]) -> list[FieldError]:
    try:
        Workflow.model_validate(dict(sent))  # top-level typos too ("specs")
    except pydantic.ValidationError as exc:
        return [
            err
            for err, raw in zip(
                errors_from_pydantic(exc, model=Workflow), exc.errors(), strict=True
            )
            if raw["type"] == "extra_forbidden"
        ]
    return []


def check(
    body: Mapping[str, Any],
    max_pods_per_workflow: int | None = None,
    sent: Mapping[str, Any] | None = None,
) -> Verdict:
    """Validate a Workflow object as the runtime would, minus imports of the users' classes;
    then its loop pods against ``max_pods_per_workflow``, and ``sent`` (the document as the
    client wrote it, see sent_document) for fields the API server would silently drop."""
    doc = {k: body[k] for k in _DOCUMENT_KEYS if k in body}
    verdict = Verdict()
    if sent is not None:
        verdict.errors.extend(_unknown_fields(sent))
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
    if verdict.workflow is not None and max_pods_per_workflow is not None:
        over = _over_budget(verdict.workflow, max_pods_per_workflow)
        if over is not None:
            verdict.errors.append(over)
    if verdict.errors:
        verdict.workflow = None
    return verdict
