"""Reading Workflow resources, and turning the API server's refusals into one line each."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .._crd import GROUP, PLURAL, VERSION
from ._connect import Target
from ._errors import PluginError

__all__ = ["api_message", "custom_api", "get_workflow", "list_workflows", "loop_index"]


def custom_api(target: Target) -> Any:
    return kubernetes.client.CustomObjectsApi(target.api)


def api_message(exc: ApiException) -> str:
    """The API server's own message (a Status object's), else its HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return " ".join(str(body["message"]).split())
    return f"{exc.status} {exc.reason}"


def get_workflow(target: Target, name: str) -> dict[str, Any]:
    try:
        obj: dict[str, Any] = custom_api(target).get_namespaced_custom_object(
            GROUP, VERSION, target.namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            raise PluginError(
                f"workflow {name!r} not found in namespace {target.namespace!r}"
            ) from None
        raise PluginError(f"workflow {name!r}: {api_message(exc)}") from None
    return obj


def list_workflows(target: Target, all_namespaces: bool = False) -> list[dict[str, Any]]:
    """The namespace's Workflows (or every namespace's), by namespace and name."""
    api = custom_api(target)
    try:
        if all_namespaces:
            found = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            found = api.list_namespaced_custom_object(GROUP, VERSION, target.namespace, PLURAL)
    except ApiException as exc:
        where = "every namespace" if all_namespaces else repr(target.namespace)
        raise PluginError(f"workflows in {where}: {api_message(exc)}") from None
    items: list[dict[str, Any]] = found.get("items") or []
    return sorted(items, key=lambda wf: (wf["metadata"]["namespace"], wf["metadata"]["name"]))


def loop_index(workflow: dict[str, Any], loop: str) -> int:
    """Where the loop named ``loop`` is in spec.loops; a PluginError naming it when absent."""
    loops = (workflow.get("spec") or {}).get("loops") or []
    for index, spec in enumerate(loops):
        if spec.get("name") == loop:
            return index
    names = ", ".join(str(spec.get("name")) for spec in loops) or "none"
    raise PluginError(
        f"workflow {workflow['metadata']['name']!r} has no loop {loop!r} (its loops: {names})"
    )
