"""values.schema.json refuses bad values at `helm template`/`install`, naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from .conftest import CHART, Render, RenderError

BAD: list[tuple[dict[str, Any], str]] = [
    ({"imag": {"tag": "x"}}, "imag"),
    ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "image.pullPolicy"),
    ({"image": {"repository": "r", "pullPolicy": "Always", "tags": "x"}}, "tags"),
    ({"image": {"repository": "has space", "pullPolicy": "Always"}}, "image.repository"),
    ({"metrics": {"port": 80}}, "metrics.port"),
    ({"liveness": {"port": "8081"}}, "liveness.port"),
    ({"webhook": {"enabled": "yes"}}, "webhook.enabled"),
    ({"watch": {"namespaces": ["Team_A"]}}, "watch.namespaces.0"),
    ({"watch": {"namespaces": ["a", "a"]}}, "watch.namespaces"),
    ({"watch": {"namespaces": "team-a"}}, "watch.namespaces"),
    ({"rbac": {"create": 1}}, "rbac.create"),
    ({"serviceAccount": {"create": True, "nmae": "x"}}, "nmae"),
    ({"serviceMonitor": {"enabled": False, "interval": "soon"}}, "serviceMonitor.interval"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu"),
    ({"resources": {"requests": {"gpu": "1"}}}, "gpu"),
    ({"resources": {"limit": {"cpu": "1"}}}, "limit"),
    ({"operator": {"statusIntervalSeconds": 0}}, "operator.statusIntervalSeconds"),
    ({"operator": {"maxPodsPerWorkflow": 0}}, "operator.maxPodsPerWorkflow"),
    ({"operator": {"maxPodsPerWorkflow": 2.5}}, "operator.maxPodsPerWorkflow"),
    ({"operator": {"maxPodsPerWorkflow": 1001}}, "operator.maxPodsPerWorkflow"),
    ({"networkPolicy": {"enabled": "yes"}}, "networkPolicy.enabled"),
    ({"networkPolicy": {"enabled": True, "metricsScrapper": {}}}, "metricsScrapper"),
    (
        # A label map where a selector belongs: matchLabels is missing.
        {"networkPolicy": {"enabled": True, "metricsScraper": {"podSelector": {"app": "p"}}}},
        "networkPolicy.metricsScraper.podSelector",
    ),
    (
        {
            "networkPolicy": {
                "enabled": True,
                "metricsScraper": {
                    "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}
                },
            }
        },
        "networkPolicy.metricsScraper.namespaceSelector.matchExpressions.0.operator",
    ),
    ({"tolerations": [{"key": "k", "effect": "Sometimes"}]}, "tolerations.0.effect"),
    ({"nodeSelector": {"disk": 1}}, "nodeSelector.disk"),
]


@pytest.mark.parametrize(("values", "field"), BAD, ids=[field for _, field in BAD])
def test_bad_values_are_refused_by_name(
    render_error: RenderError, values: dict[str, Any], field: str
) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert field in error, error


def test_defaults_and_documented_overrides_are_accepted(render: Render) -> None:
    render()
    render(
        {
            "image": {"repository": "localhost:5000/team/ostinato", "tag": "1.2.3-rc.1"},
            "watch": {"namespaces": ["a", "b-2"]},
            "resources": {"requests": {"cpu": 0.1, "memory": "64Mi"}, "limits": {}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "affinity": {"nodeAffinity": {}},
            "serviceMonitor": {"enabled": False, "interval": "1m30s", "labels": {"r": "p"}},
            "operator": {"statusIntervalSeconds": 2.5, "maxPodsPerWorkflow": 200},
            "networkPolicy": {
                "enabled": True,
                "metricsScraper": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    },
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "app", "operator": "In", "values": ["prometheus"]}
                        ]
                    },
                },
            },
        }
    )


def test_every_value_has_a_schema_and_the_schema_is_strict() -> None:
    """Each key of values.yaml is declared in the schema, and objects refuse unknown keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if ref is None:
            return node
        resolved: dict[str, Any] = schema
        for part in ref.removeprefix("#/").split("/"):
            resolved = resolved[part]
        return resolved

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        if not isinstance(value, dict) or "properties" not in node:
            return
        assert node.get("additionalProperties") is False, f"{path or '(root)'} is not strict"
        for key, child in value.items():
            assert key in node["properties"], f"{path}{key} is in values.yaml but not the schema"
            walk(child, node["properties"][key], f"{path}{key}.")

    walk(values, schema, "")
