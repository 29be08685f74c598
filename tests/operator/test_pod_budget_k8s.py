"""The pod budget holds without the webhook: the operator itself refuses to make the pods."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from hack.k8s._util import wait_until

from .conftest import Installed, Operator, run_operator
from .support import example

pytestmark = pytest.mark.timeout(180)

BUDGET = 3


@pytest.fixture(scope="module")
def operator(installed: Installed) -> Iterator[Operator]:
    with run_operator(installed, webhook=False, OSTINATO_MAX_PODS_PER_WORKFLOW=str(BUDGET)) as op:
        yield op


def _get(op: Operator, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = op.kubectl("get", "-n", ns, kind, name, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def _names(op: Operator, ns: str, kind: str, *selector: str) -> list[str]:
    out = json.loads(op.kubectl("get", kind, "-n", ns, *selector, "-o", "json").stdout)
    return sorted(item["metadata"]["name"] for item in out["items"])


def _loop_pods(op: Operator, ns: str) -> list[str]:
    # not the hub's: with a controller-manager its Deployment makes a pod too
    return _names(op, ns, "pods", "-l", "app.kubernetes.io/component=loop")


def _failed(op: Operator, ns: str, name: str) -> dict[str, Any] | None:
    wf = _get(op, ns, "workflow", name)
    if wf is None or (wf.get("status") or {}).get("phase") != "Failed":
        return None
    return wf


def test_over_the_budget_the_workflow_fails_and_gets_no_pods(
    operator: Operator, namespace: str
) -> None:
    ns, doc = namespace, example("k8s-counter.yaml")
    doc["spec"]["loops"][1]["replicas"] = BUDGET  # 1 writer + 3 readers: one pod too many
    operator.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    wf = wait_until(lambda: _failed(operator, ns, "counter"), timeout=60, what="Failed status")
    ready = {c["type"]: c for c in wf["status"]["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidSpec"
    assert (
        f"spec.loops: {BUDGET + 1} loop pods (writer 1, reader {BUDGET}) exceed "
        f"maxPodsPerWorkflow, the operator's limit of {BUDGET} loop pods per Workflow"
    ) in ready["message"]
    events = json.loads(
        operator.kubectl(
            "get", "events", "-n", ns, "--field-selector", "involvedObject.name=counter",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert any(
        e["reason"] == "InvalidSpec" and "maxPodsPerWorkflow" in e["message"] for e in events
    )
    # nothing was made: no pods, and no hub either (the check runs before any child)
    assert _names(operator, ns, "pods") == []
    assert _names(operator, ns, "deployments") == []

    # within the budget again: the same Workflow gets its children
    patch = json.dumps([{"op": "replace", "path": "/spec/loops/1/replicas", "value": 2}])
    operator.kubectl("patch", "workflow", "counter", "-n", ns, "--type=json", "-p", patch)
    want = ["counter-reader-0", "counter-reader-1", "counter-writer-0"]
    wait_until(
        lambda: True if _loop_pods(operator, ns) == want else None,
        timeout=60,
        what="the pods within the budget",
    )
