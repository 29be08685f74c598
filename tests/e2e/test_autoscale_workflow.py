"""End to end: a burst into a `minReplicas: 0, maxReplicas: 4` loop on the project's cluster.
The reader has no pod until the writer (paused at first) writes; the backlog makes the operator
create four reader pods, they drain the queue, and the loop returns to zero pods. The time from
resuming the writer to the first acknowledgement is measured at the status's granularity."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._kube import Kube, loop_summary, poll, workflow_status
from .conftest import Install

pytestmark = pytest.mark.cluster

WF = "burst"
BURST = 3000
DOC: dict[str, Any] = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": WF},
    "spec": {
        "queues": [{"name": "jobs", "mode": "work", "capacity": 10000}],
        "loops": [
            {
                "name": "writer",
                "state": "paused",
                "producer": {
                    "name": "tick",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 0.001, "count": BURST, "overrun": "catchUp"},
                },
                "nodes": [{"name": "send", "kind": "blocking", "queue": {"write": "jobs"}}],
            },
            {
                "name": "reader",
                "producer": {"name": "jobs", "queue": {"read": "jobs"}},
                "nodes": [
                    {
                        "name": "log",
                        "kind": "blocking",
                        "class": "LogSink",
                        "config": {"every": 500},
                    }
                ],
                "autoscale": {
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "targetBacklogPerReplica": 100,
                    "scaleDownDelaySeconds": 10,
                    "intervalSeconds": 1,
                },
            },
        ],
    },
}


def _reader_pods(kube: Kube, ns: str) -> list[str]:
    selector = f"ostinato.dev/workflow={WF},ostinato.dev/loop=reader"
    pods = kube.get("pods", "-n", ns, "-l", selector)["items"]
    return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]


def _queue(status: dict[str, Any]) -> dict[str, Any]:
    return next((q for q in status.get("queues", []) if q["name"] == "jobs"), {})


@pytest.mark.timeout(900)
def test_a_burst_scales_from_zero_to_four_and_back(
    kube: Kube, install: Install, tmp_path: Path
) -> None:
    ns = install.workflow_namespace

    def show() -> str:
        return str(workflow_status(kube, ns, WF))[:2000]

    path = tmp_path / "burst.yaml"
    path.write_text(yaml.safe_dump(DOC))
    install.apply_ready(path, WF, show)
    assert _reader_pods(kube, ns) == []  # minReplicas 0, nothing written yet

    patch = json.dumps([{"op": "replace", "path": "/spec/loops/0/state", "value": "running"}])
    started = time.monotonic()
    kube.kubectl("patch", "workflow", WF, "-n", ns, "--type=json", "-p", patch)
    peak: list[int] = [0]

    def first_ack() -> bool | None:
        peak[0] = max(peak[0], len(_reader_pods(kube, ns)))
        return True if (_queue(workflow_status(kube, ns, WF)).get("acknowledged") or 0) else None

    poll(first_ack, timeout=300, what="the first message processed", show=show)
    first_seconds = time.monotonic() - started
    print(f"from zero: first acknowledgement seen {first_seconds:.1f} s after the writer resumed")

    def drained() -> bool | None:
        peak[0] = max(peak[0], len(_reader_pods(kube, ns)))
        return True if _queue(workflow_status(kube, ns, WF)).get("acknowledged") == BURST else None

    poll(drained, timeout=300, what="every message of the burst acknowledged", show=show)
    print(f"at most {peak[0]} reader pods seen during the burst")
    assert peak[0] >= 2, f"at most {peak[0]} reader pods during the burst"
    events = kube.get("events", "-n", ns)["items"]
    ups = [e["message"] for e in events if e["reason"] == "ScaledUp"]
    assert any(m.startswith("loop reader: 0 -> ") and "backlog" in m for m in ups), ups

    poll(
        lambda: (not _reader_pods(kube, ns) and loop_summary(workflow_status(kube, ns, WF),
                                                            "reader").get("replicas") == 0)
        or None,
        timeout=180, what="the reader back to zero pods", show=show,
    )  # fmt: skip
    events = kube.get("events", "-n", ns)["items"]
    downs = [e["message"] for e in events if e["reason"] == "ScaledDown"]
    assert any("loop reader:" in m and "-> 0 replicas" in m for m in downs), downs
    queue = _queue(workflow_status(kube, ns, WF))
    assert (queue["enqueued"], queue["acknowledged"], queue["depth"]) == (BURST, BURST, 0)

    kube.kubectl("delete", "workflow", WF, "-n", ns, "--wait=true", "--timeout=120s", timeout=150)
