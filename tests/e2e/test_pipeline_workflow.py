"""End to end: examples/k8s-pipeline.yaml runs as pods: demo_nodes from the image, a broadcast
and a work queue, and a loop whose two replicas are two pods sharing the work."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ._kube import Kube, loop_iterations, loop_summary, poll, workflow_status
from .conftest import Install

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "k8s-pipeline.yaml"
WF = "pipeline"
LOOP_PODS = [
    "pipeline-archive-0",
    "pipeline-archive-1",
    "pipeline-dashboard-0",
    "pipeline-sensor-0",
]

pytestmark = pytest.mark.cluster


def _pod_iterations(kube: Kube, ns: str, pod: str, loop: str) -> float:
    text = kube.pod_http_get(ns, pod, 8080, "/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ostinato_iterations_total" and sample.labels.get("loop") == loop:
                return float(sample.value)
    return 0.0


@pytest.mark.timeout(900)
def test_pipeline_example_runs_as_pods(kube: Kube, install: Install) -> None:
    ns = install.workflow_namespace

    def show() -> str:
        return str(workflow_status(kube, ns, WF))[:2000]

    install.apply_ready(EXAMPLE, WF, show)

    selector = f"ostinato.dev/workflow={WF},app.kubernetes.io/component=loop"
    pods = kube.get("pods", "-n", ns, "-l", selector)["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == LOOP_PODS
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert pod["metadata"]["name"] == (
            f"{WF}-{labels['ostinato.dev/loop']}-{labels['ostinato.dev/replica']}"
        )
    status = workflow_status(kube, ns, WF)
    archive = loop_summary(status, "archive")
    assert archive["replicas"] == 2, archive

    # demo_nodes import in the image, and every loop iterates: the sensor's readings reach the
    # dashboard (broadcast) and the archive (work queue) in other pods.
    poll(
        lambda: all(
            loop_iterations(workflow_status(kube, ns, WF), loop) > 20
            for loop in ("sensor", "dashboard", "archive")
        )
        or None,
        timeout=120, what="every loop of the pipeline iterating", show=show,
    )  # fmt: skip
    # The work queue is shared by the two archive pods: each one does some of it.
    poll(
        lambda: all(
            _pod_iterations(kube, ns, pod, "archive") > 0
            for pod in ("pipeline-archive-0", "pipeline-archive-1")
        )
        or None,
        timeout=120, what="both archive replicas (two pods) taking jobs", show=show,
    )  # fmt: skip
    assert loop_summary(workflow_status(kube, ns, WF), "archive")["replicasReady"] == 2

    kube.kubectl("delete", "workflow", WF, "-n", ns, "--wait=true", "--timeout=120s", timeout=150)
    poll(
        lambda: not kube.kubectl(
            "get", "pods,deployments,services,configmaps,secrets", "-n", ns,
            "-l", f"ostinato.dev/workflow={WF}", "-o", "name",
        ).stdout.split() or None,
        timeout=180, what="every child of the deleted pipeline gone",
    )  # fmt: skip
