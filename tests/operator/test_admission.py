"""Admission runs the runtime's own validation (same field-named messages as `ostinato validate`),
the operator's pod budget, and refuses the unknown fields a `kubectl apply` sent."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ostinato_operator._admission import LAST_APPLIED, check, sent_document
from ostinato_operator._settings import OperatorSettings

from .support import EXAMPLES, example


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_admitted(path: Path) -> None:
    verdict = check(yaml.safe_load(path.read_text()))
    assert verdict.errors == []
    assert verdict.workflow is not None


def test_unimportable_user_classes_are_warnings_not_errors() -> None:
    doc = example("pipeline.yaml")
    # Not demo_nodes: another test may have made the examples' folder importable.
    doc["spec"]["loops"][0]["nodes"][0]["class"] = "ostinato_no_such_package:Node"
    verdict = check(doc)
    assert verdict.errors == []
    assert any(
        w.startswith("spec.loops[0].nodes[0].class: not importable") for w in verdict.warnings
    )


def _validate_cli(doc: dict[str, object], tmp_path: Path) -> list[str]:
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "ostinato", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    return [line.strip() for line in proc.stderr.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["spec"]["loops"][1].update(name="writer"), "spec.loops[1].name"),
        (
            lambda d: d["spec"]["loops"][0]["nodes"][0].update(queue={"write": "nope"}),
            "spec.loops[0].nodes[0].queue.write",
        ),
        (
            lambda d: d["spec"]["loops"][0]["producer"]["config"].update(periodSeconds=-1),
            "spec.loops[0].producer.config.periodSeconds",
        ),
        (lambda d: d["spec"]["queues"][0].update(capacity=0), "spec.queues[0].capacity"),
        (lambda d: d["spec"]["loops"][0].update(replicas="many"), "spec.loops[0].replicas"),
    ],
    ids=["duplicate-loop", "unknown-queue", "bad-builtin-config", "range", "type"],
)
def test_rejections_name_the_field_like_ostinato_validate(
    mutate: object, path: str, tmp_path: Path
) -> None:
    doc = copy.deepcopy(example("k8s-counter.yaml"))
    mutate(doc)  # type: ignore[operator]
    verdict = check(doc)
    assert verdict.workflow is None
    assert next(e.path for e in verdict.errors) == path
    lines = verdict.message.splitlines()
    assert lines[0].startswith("invalid workflow (")
    assert [line.strip() for line in lines[1:]] == _validate_cli(doc, tmp_path)


def test_a_name_the_hub_service_cannot_take_is_rejected() -> None:
    doc = example("k8s-counter.yaml")
    doc["metadata"]["name"] = "9lives"
    verdict = check(doc)
    assert [e.path for e in verdict.errors] == ["metadata.name"]
    assert "start with a letter" in verdict.message


# -- the pod budget (maxPodsPerWorkflow) ---------------------------------------------------------


def test_every_example_fits_the_default_pod_budget() -> None:
    budget = OperatorSettings().max_pods_per_workflow
    for path in EXAMPLES:
        assert check(yaml.safe_load(path.read_text()), budget).errors == [], path.name


def test_a_workflow_over_the_pod_budget_is_refused_naming_the_limit() -> None:
    """The issue's `replicas: 1000`: inside the CRD's bounds, but 1000 pods for one Workflow."""
    doc = example("k8s-counter.yaml")
    doc["spec"]["loops"][1]["replicas"] = 1000
    verdict = check(doc, 50)
    assert verdict.workflow is None
    assert [str(e) for e in verdict.errors] == [
        "spec.loops: 1001 loop pods (writer 1, reader 1000) exceed maxPodsPerWorkflow, the "
        "operator's limit of 50 loop pods per Workflow: lower replicas, stop loops, or raise "
        "maxPodsPerWorkflow (chart value operator.maxPodsPerWorkflow)"
    ]
    assert check(doc).errors == []  # no budget given: the runtime's check alone


def test_the_pod_budget_counts_only_loops_that_get_pods() -> None:
    doc = example("k8s-counter.yaml")
    doc["spec"]["loops"][1]["replicas"] = 49
    assert check(doc, 50).errors == []  # 1 + 49: exactly the budget
    doc["spec"]["loops"][1]["replicas"] = 50
    assert [e.path for e in check(doc, 50).errors] == ["spec.loops"]
    doc["spec"]["loops"][1]["state"] = "stopped"  # a stopped loop has no pods
    assert check(doc, 50).errors == []
    doc["spec"]["loops"][1]["state"] = "running"
    doc["spec"]["state"] = "stopped"
    assert check(doc, 50).errors == []


# -- fields the API server prunes: what `kubectl apply` sent --------------------------------------


def _applied(doc: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(doc)
    obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(sent)}
    return obj


def test_unknown_fields_in_what_kubectl_sent_are_refused_with_the_field_named() -> None:
    sent = example("k8s-counter.yaml")
    sent["spec"]["loops"][0]["max_iterations"] = 5
    sent["spec"]["loops"][1]["replica"] = 2
    sent["specs"] = {}
    stored = example("k8s-counter.yaml")  # what the API server keeps after pruning
    body = _applied(stored, sent)
    verdict = check(body, sent=sent_document(body, None))
    assert [str(e) for e in verdict.errors] == [
        "spec.loops[0].max_iterations: unknown field; did you mean maxIterations?",
        "spec.loops[1].replica: unknown field; did you mean replicas?",
        "specs: unknown field; did you mean spec?",
    ]
    assert verdict.workflow is None


def test_only_the_copy_this_request_wrote_counts() -> None:
    sent = example("k8s-counter.yaml")
    sent["spec"]["loops"][0]["max_iterations"] = 5
    body = _applied(example("k8s-counter.yaml"), sent)
    # e.g. a `kubectl patch` of an object applied long ago: the annotation is unchanged
    assert sent_document(body, old=body) is None
    assert sent_document(example("k8s-counter.yaml"), None) is None  # not from kubectl apply
    assert sent_document(_applied(example("k8s-counter.yaml"), sent), None) == sent
    broken = example("k8s-counter.yaml")
    broken["metadata"]["annotations"] = {LAST_APPLIED: "{not json"}
    assert sent_document(broken, None) is None
