"""spec.loops[].autoscale: what it accepts, its defaults, and a one-line error naming the field
for each way it can be wrong."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

import ostinato
from ostinato._model._plan import dump_document

L1 = "spec.loops[1]"


def doc(autoscale: Any = None, **reader: Any) -> dict[str, Any]:
    """A writer loop, a work queue and a reader loop whose producer reads it."""
    loop: dict[str, Any] = {
        "name": "reader",
        "producer": {"name": "take", "queue": {"read": "jobs"}},
        "nodes": [{"name": "log", "kind": "blocking", "class": "LogSink"}],
        **reader,
    }
    if autoscale is not None:
        loop["autoscale"] = autoscale
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": {
            "queues": [{"name": "jobs", "mode": "work"}],
            "loops": [
                {
                    "name": "writer",
                    "producer": {"name": "count", "class": "CounterProducer"},
                    "nodes": [{"name": "put", "kind": "blocking", "queue": {"write": "jobs"}}],
                },
                loop,
            ],
        },
    }


def test_defaults_and_replica_bounds() -> None:
    plan = ostinato.load_workflow(doc({"maxReplicas": 4}))
    spec = plan.loop("reader").spec
    assert spec.autoscale is not None
    scale = spec.autoscale
    assert (scale.min_replicas, scale.max_replicas, scale.target_backlog_per_replica) == (1, 4, 100)
    assert (scale.scale_up_cooldown_seconds, scale.scale_down_delay_seconds) == (5.0, 30.0)
    assert scale.interval_seconds == 1.0
    assert spec.replicas is None
    assert (spec.initial_replicas, spec.max_replicas) == (1, 4)
    writer = plan.loop("writer").spec
    assert (writer.replicas, writer.initial_replicas, writer.max_replicas) == (None, 1, 1)


def test_zero_min_replicas_and_a_round_trip_through_json() -> None:
    plan = ostinato.load_workflow(doc({"minReplicas": 0, "maxReplicas": 3}))
    assert plan.loop("reader").spec.initial_replicas == 0
    # a process loop and the operator get the document as JSON: it must load again as it was
    text = dump_document(plan.workflow)
    assert "replicas" not in json.loads(text)["spec"]["loops"][1]
    assert ostinato.load_workflow(json.loads(text)).workflow == plan.workflow


def test_fixed_replicas_still_count() -> None:
    spec = ostinato.load_workflow(doc(replicas=3)).loop("reader").spec
    assert (spec.replicas, spec.initial_replicas, spec.max_replicas) == (3, 3, 3)


def _bad(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(document)
    lines = [str(e) for e in info.value.errors]
    assert all("\n" not in line for line in lines)
    return lines


def _broadcast() -> dict[str, Any]:
    d = doc({"maxReplicas": 2})
    d["spec"]["queues"][0]["mode"] = "broadcast"
    return d


def _producer_not_a_reader() -> dict[str, Any]:
    d = doc({"maxReplicas": 2})
    reader = d["spec"]["loops"][1]
    reader["producer"] = {"name": "tick", "class": "CounterProducer"}
    reader["nodes"].append({"name": "take", "kind": "blocking", "queue": {"read": "jobs"}})
    return d


CASES = [
    pytest.param(doc({"maxReplicas": 2}, replicas=2), [
        f"{L1}.replicas: set either replicas or autoscale, not both"], id="with-replicas"),
    pytest.param(doc({"minReplicas": 5, "maxReplicas": 2}), [
        f"{L1}.autoscale.minReplicas: must be <= maxReplicas (2)"], id="min-above-max"),
    pytest.param(doc({}), [f"{L1}.autoscale.maxReplicas: required field is missing"],
                 id="max-missing"),
    pytest.param(doc({"maxReplicas": 0}), [f"{L1}.autoscale.maxReplicas: must be >= 1"],
                 id="max-zero"),
    pytest.param(doc({"maxReplicas": 2, "minReplicas": -1}), [
        f"{L1}.autoscale.minReplicas: must be >= 0"], id="min-negative"),
    pytest.param(doc({"maxReplicas": 2, "targetBacklogPerReplica": 0}), [
        f"{L1}.autoscale.targetBacklogPerReplica: must be >= 1"], id="target-zero"),
    pytest.param(doc({"maxReplicas": 2, "scaleDownDelaySeconds": -1}), [
        f"{L1}.autoscale.scaleDownDelaySeconds: must be >= 0"], id="delay-negative"),
    pytest.param(doc({"maxReplicas": 2, "scaleUpCooldownSeconds": "5"}), [
        f"{L1}.autoscale.scaleUpCooldownSeconds: Input should be a valid number"],
                 id="cooldown-a-string"),
    pytest.param(doc({"maxReplicas": 2, "intervalSeconds": 0}), [
        f"{L1}.autoscale.intervalSeconds: must be > 0"], id="interval-zero"),
    pytest.param(doc({"maxReplicas": 2, "max_replicas": 2}), [
        f"{L1}.autoscale.max_replicas: unknown field; did you mean maxReplicas?"],
                 id="snake-case"),
    pytest.param(_broadcast(), [
        f"{L1}.autoscale: only a loop whose producer reads a work queue autoscales; its "
        "producer reads queue 'jobs', a broadcast queue"], id="broadcast-queue"),
    pytest.param(_producer_not_a_reader(), [
        f"{L1}.autoscale: only a loop whose producer reads a work queue autoscales; its "
        "producer reads no queue"], id="producer-reads-nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("document", "expected"), CASES)
def test_refused_with_the_field_named(document: dict[str, Any], expected: list[str]) -> None:
    lines = _bad(copy.deepcopy(document))
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
