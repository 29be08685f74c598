"""The committed CRD is what the models generate, the chart's copy is identical, and the schema
is structural (what apiextensions.k8s.io/v1 on Kubernetes 1.20 accepts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ostinato_operator._crd import build_crd, crd_yaml, structural

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "workflows.ostinato.dev.yaml"
HELM_CRD = ROOT / "helm" / "ostinato" / "crds" / "workflows.ostinato.dev.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD.read_text() == crd_yaml(), "crds/ drifted from the pydantic models: run `make crds`"


def test_helm_copy_is_byte_identical() -> None:
    assert HELM_CRD.read_bytes() == CRD.read_bytes(), "run `make crds` to copy the CRD to the chart"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in node.get("properties", {}).items():
            out.extend(_walk(sub, f"{path}.{key}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def _schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD.read_text())
    version = doc["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_schema_is_structural_for_kubernetes_1_20() -> None:
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "propertyNames", "title"}
    for path, node in _walk(_schema()):
        assert not forbidden & node.keys(), f"{path}: {sorted(forbidden & node.keys())}"
        assert "default" not in node, f"{path}: defaults would be written into stored objects"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "properties" in node:
            assert node["type"] == "object", path
            assert node.get("additionalProperties") is not False, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path
            assert "minimum" in node, path
        assert "x-kubernetes-validations" not in node, f"{path}: CEL is newer than 1.20"


def test_descriptions_reach_kubectl_explain() -> None:
    spec = _schema()["properties"]["spec"]
    loops = spec["properties"]["loops"]
    assert "loops" in loops["description"].lower()
    loop = loops["items"]["properties"]
    for field in ("name", "pool", "replicas", "state", "image", "resources", "nodes"):
        assert loop[field].get("description"), field
    assert "Default: thread" in loop["pool"]["description"]
    node = loop["nodes"]["items"]["properties"]
    assert node["config"] == {
        "description": "Validated by the node class's own config model.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    # dict[Literal[cpu, memory, ...], Quantity] becomes a fixed set of keys
    requests = loop["resources"]["properties"]["requests"]
    assert set(requests["properties"]) == {"cpu", "memory", "ephemeral-storage"}


def _opaque_in_openapi_v2(node: dict[str, Any]) -> bool:
    """What the API server publishes to OpenAPI v2, which `kubectl explain` reads (1.20's
    ToStructuralOpenAPIV2): a nullable or unknown-field-preserving node loses its type and
    properties there, so explain shows no fields under it."""
    return bool(node.get("nullable") or node.get("x-kubernetes-preserve-unknown-fields"))


def test_every_spec_object_with_fields_reaches_kubectl_explain() -> None:
    """`kubectl explain workflow.spec.loops.producer` showed no fields: producer (like
    resources, circuitBreaker, queue) was `nullable`, which OpenAPI v2 cannot express."""
    spec = _schema()["properties"]["spec"]
    hidden = [path for path, node in _walk(spec, "spec") if _opaque_in_openapi_v2(node)]
    # Node configs are free-form on purpose: each node class validates its own.
    assert hidden == [
        "spec.loops[].producer.config",
        "spec.loops[].nodes[].config",
    ]
    loop = spec["properties"]["loops"]["items"]["properties"]
    producer = loop["producer"]
    assert producer["type"] == "object"
    assert {"name", "class", "kind", "config", "queue", "retry", "onError"} <= set(
        producer["properties"]
    )
    assert producer["description"] == "The node that starts each iteration."
    for name in ("resources", "circuitBreaker"):
        assert loop[name]["properties"], name


def test_no_field_is_required_yet_nullable() -> None:
    """Without `nullable`, a null is pruned before validation: harmless only for optional
    fields whose unset value is None, which `structural` checks."""
    with pytest.raises(ValueError, match="required yet may be null"):
        structural(
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
                "required": ["a"],
            }
        )


def test_names_columns_and_status_subresource() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["owf"]
    assert names["categories"] == ["ostinato"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Loops"]["jsonPath"] == ".status.ready"
    assert columns["Age"]["type"] == "date"
    assert columns["Iterations/s"]["priority"] == 1
    assert columns["Errors"]["priority"] == 1
    # Why, without -o wide (as Numaflow's MESSAGE).
    assert columns["Message"]["jsonPath"] == ".status.message"
    assert "priority" not in columns["Message"]
    assert list(columns)[-1] == "Message"
    # How old the status is: older than statusRefreshSeconds means nobody keeps it up to date.
    assert (columns["Updated"]["jsonPath"], columns["Updated"]["type"]) == (
        ".status.lastUpdateTime",
        "date",
    )
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for field in ("observedGeneration", "phase", "conditions", "loops", "nodes", "queues"):
        assert field in status, field
    condition = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime"} <= condition.keys()


def test_structural_rewrites_json_schema_constructs() -> None:
    raw = {
        "$defs": {
            "M": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "additionalProperties": False,
                "title": "M",
            }
        },
        "type": "object",
        "properties": {
            "m": {
                "anyOf": [{"$ref": "#/$defs/M"}, {"type": "null"}],
                "default": None,
                "description": "an M",
            },
            "k": {"const": "x", "type": "string"},
            "f": {"type": "number", "exclusiveMinimum": 0, "default": 2.5, "description": "f."},
            "free": {"type": "object", "additionalProperties": True},
        },
    }
    out = structural(raw)
    m = out["properties"]["m"]
    assert m == {  # no `nullable`: a null is pruned, and unset is what None means here
        "description": "an M",
        "type": "object",
        "properties": {"a": {"type": "integer"}},
    }
    assert out["properties"]["k"]["enum"] == ["x"]
    assert out["properties"]["f"] == {
        "description": "f. Default: 2.5.",
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert out["properties"]["free"]["x-kubernetes-preserve-unknown-fields"] is True


def test_status_states_and_health_are_the_runtimes_enums() -> None:
    """The status's states are the runtime's LoopState (plus unknown) and NodeHealth: the API
    server refuses a status that says anything else."""
    from ostinato import DesiredState, LoopState, NodeHealth

    status = _schema()["properties"]["status"]["properties"]
    loop = status["loops"]["items"]["properties"]
    assert loop["state"]["enum"] == [*LoopState, "unknown"]
    assert loop["desiredState"]["enum"] == list(DesiredState)
    assert status["nodes"]["items"]["properties"]["health"]["enum"] == list(NodeHealth)


def test_the_operator_uses_only_the_runtimes_public_names() -> None:
    """`from ostinato import ...` and `ostinato.lowlevel`, never a private module: the runtime's
    modules may move."""
    for source in (ROOT / "operator" / "ostinato_operator").glob("*.py"):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            words = line.split()
            if words[:1] in (["from"], ["import"]) and len(words) > 1:
                assert not words[1].startswith("ostinato._"), f"{source.name}:{number}: {line}"


def test_loops_and_queues_are_lists_keyed_by_name() -> None:
    """So server-side apply merges them by name and the API server refuses two of one name;
    a list-map key must be required (or defaulted) in every item, and name is."""
    spec = _schema()["properties"]["spec"]["properties"]
    for field in ("loops", "queues"):
        assert spec[field]["x-kubernetes-list-type"] == "map", field
        assert spec[field]["x-kubernetes-list-map-keys"] == ["name"], field
        assert "name" in spec[field]["items"]["required"], field
        assert spec[field]["items"]["properties"]["name"]["type"] == "string", field
