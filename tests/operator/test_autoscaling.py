"""The operator's side of autoscaling without a cluster: pod counts from decisions, counts kept
in the status across restarts, and a decision round over a hub's status."""

from __future__ import annotations

import copy
from typing import Any

from ostinato import WorkflowStatus
from ostinato_operator._autoscaling import Scaling, replica_count, scaled_from_status
from ostinato_operator._children import Owner, loop_pods
from ostinato_operator._reconcile import parse
from ostinato_operator._settings import OperatorSettings
from tests.spec.test_autoscale_spec import doc

from .support import as_object

SETTINGS = OperatorSettings(image="reg.example/ostinato:1")


def _workflow(**autoscale: Any) -> tuple[Owner, Any]:
    body = as_object(copy.deepcopy(doc({"minReplicas": 0, "maxReplicas": 4, **autoscale})))
    workflow, _ = parse(body, SETTINGS)
    return Owner.of(body), workflow


def test_pods_follow_the_decision_and_touch_no_other_loop() -> None:
    owner, wf = _workflow()
    reader = wf.spec.loops[1]
    assert replica_count(reader, {}) == 0  # minReplicas before any decision
    assert replica_count(reader, {"reader": 9}) == 4  # within maxReplicas
    names = set(loop_pods(owner, wf, SETTINGS, {"reader": 2}))
    assert names == {"wf-writer-0", "wf-reader-0", "wf-reader-1"}
    fewer = loop_pods(owner, wf, SETTINGS, {"reader": 1})
    more = loop_pods(owner, wf, SETTINGS, {"reader": 2})
    assert fewer["wf-writer-0"] == more["wf-writer-0"]  # the same manifest: not replaced


def test_counts_come_back_from_the_status() -> None:
    status = {"loops": [{"name": "reader", "replicas": 3}, {"name": "x", "replicas": True}]}
    assert scaled_from_status(status) == {"reader": 3}
    assert scaled_from_status({"loops": "junk"}) == {}
    assert scaled_from_status(None) == {}


def test_a_round_scales_on_the_hub_backlog() -> None:
    _, wf = _workflow(scaleUpCooldownSeconds=0)
    scaling = Scaling()
    assert scaling.counts({"loops": [{"name": "reader", "replicas": 1}]}) == {"reader": 1}
    hub = WorkflowStatus.model_validate(
        {"workflow": "wf", "loops": [], "queues": [{"name": "jobs", "depth": 350, "enqueued": 350}]}
    )
    [(loop, decision)] = scaling.round(wf, hub, 10.0, {"reader": 1})
    assert (loop, decision.previous, decision.desired) == ("reader", 1, 4)
    assert "backlog 350 (350 waiting, 0 in flight)" in decision.reason
    assert scaling.counts(None) == {"reader": 4}
    # a stopped loop is not scaled, and a round within the interval decides nothing
    assert scaling.round(wf, hub, 10.5, {"reader": 4}) == []
    assert scaling.round(wf, hub, 20.0, {"reader": 4}, skip=["reader"]) == []
