"""The CustomResourceDefinition, generated from the runtime's pydantic spec models (`make crds`).

pydantic writes JSON Schema (2020-12); Kubernetes wants a *structural* OpenAPI v3.0 subset that
1.20 accepts: every $ref inlined, no `additionalProperties: false` beside `properties` (unknown
fields are pruned instead), no `const`, no `propertyNames`, boolean `exclusiveMinimum`, and
free-form maps marked `x-kubernetes-preserve-unknown-fields`. Defaults are not copied into the
schema (the API server would write them into every stored object); they are appended to the
descriptions instead.

`anyOf [X, null]` becomes plain X, not `nullable: true`: the API server publishes a nullable
field to OpenAPI v2 without its type and properties, so `kubectl explain` showed nothing under
spec.loops.producer. Leaving it out changes no meaning: every optional field of the models
defaults to None, and the API server drops a null it may not store (no default, not nullable)
before validation, so `producer: null` is still accepted and reads as unset.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from ostinato.lowlevel import WorkflowSpec

from ._status_models import WorkflowResourceStatus

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "build_crd", "crd_yaml", "structural"]

GROUP = "ostinato.dev"
VERSION = "v1alpha1"
KIND = "Workflow"
PLURAL = "workflows"
SINGULAR = "workflow"
SHORT_NAMES = ["owf"]  # not Argo's "wf"
CATEGORIES = ["ostinato"]

_DROP = {"title", "default", "$defs", "examples"}


_INT64_MAX = 2**63 - 1


def _default_text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON Schema node (pydantic's) as a structural OpenAPI v3 schema node."""
    defs = schema.get("$defs", {}) if defs is None else defs
    node = dict(schema)
    if "$ref" in node:  # a field's own keys (description, default) win over the model's
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    out: dict[str, Any] = {}
    variants = node.get("anyOf")
    if variants is not None:
        rest = [v for v in variants if v.get("type") != "null"]
        if len(rest) > 1 and all(_is_string_choice(v, defs) for v in rest):
            # an enum and more values (LoopState | Literal["unknown"]): one enum of them all
            rest = [_string_choices(rest, defs)]
        if len(rest) != 1:
            raise ValueError(f"cannot express anyOf {variants!r} structurally")
        if len(rest) != len(variants) and node.get("default") is not None:
            # null would then mean something other than "unset": it needs `nullable`
            raise ValueError(f"a nullable field with a default: {node!r}")
        inner = structural(rest[0], defs)
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        merged = {**inner, **structural(outer, defs)} if outer else inner
        if "default" in node and node["default"] is not None and "description" in merged:
            merged["description"] += f" Default: {_default_text(node['default'])}."
        return _ordered(merged)
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum" or key == "exclusiveMaximum":
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out["properties"] = {k: structural(v, defs) for k, v in value.items()}
            for name in node.get("required", []):
                if any(v.get("type") == "null" for v in value[name].get("anyOf", [])):
                    raise ValueError(f"{name!r} is required yet may be null")
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                out["additionalProperties"] = structural(value, defs)
            elif value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            # False: unknown fields are pruned (and rejected by kubectl and the webhook)
        elif key == "propertyNames":
            continue  # handled below with additionalProperties
        elif key == "maximum" and value >= _INT64_MAX:
            # The int64 bound: the API server reads schema numbers as float64, and 2**63 - 1
            # overflows to -2**63 there (every value "should be <= -9223372036854775808"). It
            # refuses what does not fit an int64 by itself; the runtime checks the bound.
            continue
        else:
            out[key] = value
    names = node.get("propertyNames", {}).get("enum")
    if names is not None and "additionalProperties" in out:
        # dict[Literal[...], X]: a fixed set of keys, each an X
        value_schema = out.pop("additionalProperties")
        out["properties"] = {name: dict(value_schema) for name in names}
    if (
        node.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "default" in node and node["default"] not in (None, "", [], {}) and "description" in out:
        out["description"] += f" Default: {_default_text(node['default'])}."
    return _ordered(out)


def _resolved(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return {
            **defs[node["$ref"].rsplit("/", 1)[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def _is_string_choice(node: dict[str, Any], defs: dict[str, Any]) -> bool:
    node = _resolved(node, defs)
    return node.get("type") == "string" and ("enum" in node or "const" in node)


def _string_choices(variants: list[dict[str, Any]], defs: dict[str, Any]) -> dict[str, Any]:
    values: list[Any] = []
    for variant in (_resolved(v, defs) for v in variants):
        values += variant.get("enum", [variant.get("const")])
    return {"type": "string", "enum": values}


_ORDER = ["description", "type", "nullable", "enum"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    first = {k: node[k] for k in _ORDER if k in node}
    return {**first, **{k: v for k, v in node.items() if k not in first}}


def _schema_of(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw)


#: spec lists whose items are told apart by name: server-side apply and `kubectl apply` merge
#: them by name (not by position), and the API server refuses two items of one name.
KEYED_BY_NAME = ("loops", "queues")


def _keyed_by_name(spec: dict[str, Any]) -> None:
    for field in KEYED_BY_NAME:
        schema = spec["properties"][field]
        if "name" not in schema["items"].get("required", []):
            raise ValueError(f"spec.{field}: a list keyed by name needs name to be required")
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = ["name"]


def build_crd() -> dict[str, Any]:
    spec = _schema_of(WorkflowSpec)
    _keyed_by_name(spec)
    spec["description"] = (
        "The workflow: its loops, the queues between them, the desired state and the image."
    )
    status = _schema_of(WorkflowResourceStatus)
    root = {
        "description": "A workflow of continuous loops of Python nodes, run by the ostinato "
        "operator: one pod per loop replica, a ZeroMQ hub, status from the hub.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Loops",
            "type": "string",
            "description": "Loops ready / loops expected.",
            "jsonPath": ".status.ready",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Iterations/s",
            "type": "number",
            "priority": 1,
            "description": "Iterations per second, all loops.",
            "jsonPath": ".status.iterationsPerSecond",
        },
        {
            "name": "Errors",
            "type": "integer",
            "priority": 1,
            "description": "Failed iterations, all loops.",
            "jsonPath": ".status.errors",
        },
        {
            "name": "Updated",
            "type": "date",
            "priority": 1,
            "description": "When the operator last wrote the status; it does at least every "
            "statusRefreshSeconds (60 s by default), so an older time means a stale status.",
            "jsonPath": ".status.lastUpdateTime",
        },
        {
            # Last, as Numaflow's: it is the long one.
            "name": "Message",
            "type": "string",
            "description": "What needs attention: the Degraded (else Progressing) condition's "
            "reason and message.",
            "jsonPath": ".status.message",
        },
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "ostinato",
                "app.kubernetes.io/part-of": "ostinato",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = (
    "# Generated by `make crds` from the pydantic models (ostinato_operator._crd); do not edit.\n"
)


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: no YAML anchors in a Kubernetes manifest."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    body = yaml.dump(build_crd(), Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + body


def main() -> int:
    import sys

    sys.stdout.write(crd_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
