"""End to end: helm install the operator, run examples/k8s-counter.yaml across pods, pause and
resume a loop, kill the hub while its durable queue holds acknowledged messages and lose none,
delete the Workflow and leave nothing behind."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ._kube import Kube, loop_iterations, loop_summary, poll, workflow_status
from .conftest import Install

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "k8s-counter.yaml"
WF = "counter"
WRITER, READER = "writer", "reader"
# Every kind the operator creates for a Workflow, all labelled ostinato.dev/workflow=<wf>.
CHILD_KINDS = (
    "pods,deployments,replicasets,services,configmaps,secrets,persistentvolumeclaims,"
    "networkpolicies"
)

pytestmark = pytest.mark.cluster


def _status(kube: Kube, ns: str) -> dict[str, Any]:
    return workflow_status(kube, ns, WF)


def _status_when(
    kube: Kube, ns: str, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The Workflow's status when `predicate` holds for it, else None (for poll)."""
    status = _status(kube, ns)
    return status if predicate(status) else None


def _loop(status: dict[str, Any], name: str) -> dict[str, Any]:
    return loop_summary(status, name)


def _queue_depth(status: dict[str, Any], name: str = "numbers") -> int | None:
    for queue in status.get("queues", []):
        if queue["name"] == name:
            return int(queue["depth"])
    return None


def _iterations(status: dict[str, Any], loop: str) -> int:
    return loop_iterations(status, loop)


def _metric(kube: Kube, ns: str, pod: str, name: str, loop: str) -> float:
    text = kube.pod_http_get(ns, pod, 8080, "/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("loop") == loop:
                return float(sample.value)
    raise AssertionError(f"{pod}: no {name}{{loop={loop!r}}} in /metrics")


def _numbers(kube: Kube, ns: str, pod: str, word: str) -> list[int]:
    """The numbers a LogSink of the example logged as '<word> N' in the pod's log, in order."""
    log = kube.kubectl("logs", pod, "-n", ns, timeout=60).stdout
    return [int(n) for n in re.findall(rf"\b{word} (\d+)\b", log)]


def _patch_loop_state(kube: Kube, ns: str, index: int, state: str) -> None:
    patch = [{"op": "replace", "path": f"/spec/loops/{index}/state", "value": state}]
    kube.kubectl("patch", "workflow", WF, "-n", ns, "--type=json", "-p", json.dumps(patch))


def _children(kube: Kube, ns: str) -> list[str]:
    listing = kube.kubectl(
        "get", CHILD_KINDS, "-n", ns, "-l", f"ostinato.dev/workflow={WF}", "-o", "name"
    ).stdout
    return listing.split()


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """matchLabels as Kubernetes reads it (the operator's policies use no matchExpressions)."""
    assert not selector.get("matchExpressions"), selector
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def _policies_select_the_real_pods(
    kube: Kube, install: Install, loop_pods: list[dict[str, Any]]
) -> None:
    """This cluster's CNI does not enforce NetworkPolicies, so check the next best thing: the
    hub's policy selects the running hub pod and admits these loop pods and the running
    operator's pod (by its namespace's name and its labels)."""
    ns = install.workflow_namespace
    policy = kube.get("networkpolicy", f"{WF}-hub", "-n", ns)["spec"]
    selector = f"ostinato.dev/workflow={WF},app.kubernetes.io/component=hub"
    (hub,) = kube.get("pods", "-n", ns, "-l", selector)["items"]
    assert _selects(policy["podSelector"], hub["metadata"]["labels"])
    zmq, http = policy["ingress"]
    assert zmq["ports"] == [{"protocol": "TCP", "port": 5555}]
    assert http["ports"] == [{"protocol": "TCP", "port": 8080}]
    for pod in loop_pods:
        for rule in (zmq, http):
            assert any(_selects(p["podSelector"], pod["metadata"]["labels"]) for p in rule["from"])
    operator_pods = kube.get(
        "pods", "-n", install.operator_namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    assert operator_pods
    admitted = [
        peer
        for peer in http["from"]
        if peer.get("namespaceSelector", {}).get("matchLabels")
        == {"kubernetes.io/metadata.name": install.operator_namespace}
    ]
    assert len(admitted) == 1, http["from"]
    for pod in operator_pods:
        assert _selects(admitted[0]["podSelector"], pod["metadata"]["labels"]), pod["metadata"]


@pytest.mark.timeout(1500)
def test_counter_workflow_end_to_end(kube: Kube, install: Install) -> None:
    ns = install.workflow_namespace

    def show() -> str:
        return json.dumps(_status(kube, ns))[:2000]

    # -- apply and wait for Ready ---------------------------------------------------------
    applied = time.monotonic()
    install.apply_ready(EXAMPLE, WF, show)
    print(f"e2e: apply to Ready in {time.monotonic() - applied:.1f} s")

    # Every child the operator owns is there, owned by the Workflow.
    uid = kube.get("workflow", WF, "-n", ns)["metadata"]["uid"]
    for kind, name in [
        ("configmap", f"{WF}-spec"),
        ("secret", f"{WF}-curve"),
        ("deployment", f"{WF}-hub"),
        ("service", f"{WF}-hub"),
        ("persistentvolumeclaim", f"{WF}-hub-state"),
        ("pod", f"{WF}-{WRITER}-0"),
        ("pod", f"{WF}-{READER}-0"),
        ("networkpolicy", f"{WF}-hub"),
        ("networkpolicy", f"{WF}-loops"),
    ]:
        obj = kube.get(kind, name, "-n", ns)
        assert obj is not None, f"{kind} {name} missing"
        owners = [o["uid"] for o in obj["metadata"].get("ownerReferences", [])]
        assert uid in owners, f"{kind} {name} is not owned by the Workflow: {owners}"
    writer_pod, reader_pod = f"{WF}-{WRITER}-0", f"{WF}-{READER}-0"
    pods = {p: kube.get("pod", p, "-n", ns) for p in (writer_pod, reader_pod)}
    ips = {p: obj["status"]["podIP"] for p, obj in pods.items()}
    assert len(set(ips.values())) == 2, f"the two loops share a pod IP: {ips}"
    reader_uid = pods[reader_pod]["metadata"]["uid"]
    _policies_select_the_real_pods(kube, install, list(pods.values()))

    # The operator's own metrics, through the chart's metrics Service.
    def operator_metric(name: str) -> float:
        text = kube.service_http_get(
            install.operator_namespace, f"{install.release}-ostinato-metrics", "metrics", "/metrics"
        )
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        raise AssertionError(f"operator /metrics has no {name}")

    assert operator_metric("ostinato_operator_managed_workflows") == 1
    assert operator_metric("ostinato_operator_reconciles_total") >= 1

    # -- a manifest the runtime rejects is refused at apply, by the in-cluster webhook ------
    bad = EXAMPLE.read_text().replace("write: numbers", "write: nope")
    bad = bad.replace(f"name: {WF}\n", f"name: {WF}-bad\n", 1)
    refused = kube.kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert refused.returncode != 0, "a Workflow writing an undeclared queue was accepted"
    assert "spec.loops[0].nodes[0].queue.write" in refused.stderr, refused.stderr
    assert "'nope' is not declared in spec.queues" in refused.stderr, refused.stderr

    # -- data crossed pods over ZeroMQ: the reader's counters rise --------------------------
    first = _iterations(_status(kube, ns), READER)
    poll(
        lambda: _iterations(_status(kube, ns), READER) > first + 50 or None,
        timeout=60, what="reader iterations in the Workflow status rising", show=show,
    )  # fmt: skip
    metric = "ostinato_iterations_total"
    before = _metric(kube, ns, reader_pod, metric, READER)
    poll(
        lambda: _metric(kube, ns, reader_pod, metric, READER) > before + 50 or None,
        timeout=60, what=f"{metric} of {reader_pod} (via its pod IP {ips[reader_pod]}) rising",
    )  # fmt: skip

    # -- pause the reader: paused in status and in kubectl get, the queue fills -------------
    _patch_loop_state(kube, ns, 1, "paused")
    paused = poll(
        lambda: _status_when(kube, ns, lambda s: _loop(s, READER).get("state") == "paused"),
        timeout=90, what="reader state 'paused' in status", show=show,
    )  # fmt: skip
    assert _loop(paused, READER)["desiredState"] == "paused"
    assert _loop(paused, WRITER)["state"] == "running"
    held = _iterations(paused, READER)
    deep = poll(
        lambda: _status_when(kube, ns, lambda s: (_queue_depth(s) or 0) >= 100),
        timeout=90, what="queue 'numbers' filling while its reader is paused", show=show,
    )  # fmt: skip
    # Paused means no iterations: the reader's count did not move while the queue filled.
    assert _iterations(deep, READER) == held, show()
    wide = kube.kubectl("get", "owf", WF, "-n", ns, "-o", "wide").stdout
    print(wide)
    header, row = wide.splitlines()[:2]
    assert "PHASE" in header
    assert row.split()[0] == WF
    assert kube.get("pod", reader_pod, "-n", ns)["metadata"]["uid"] == reader_uid, (
        "a pause must keep the reader's pod (warm), not replace it"
    )

    # -- resume: running again, the queue drains -----------------------------------------
    _patch_loop_state(kube, ns, 1, "running")
    poll(
        lambda: _status_when(
            kube,
            ns,
            lambda s: _loop(s, READER).get("state") == "running" and _iterations(s, READER) > held,
        ),
        timeout=90, what="reader running again and iterating", show=show,
    )  # fmt: skip
    poll(
        lambda: (_queue_depth(_status(kube, ns)) or 0) < 50 or None,
        timeout=90, what="queue 'numbers' draining after the resume", show=show,
    )  # fmt: skip

    # -- kill the hub pod while it holds acknowledged messages: the durable queue loses none --
    # Pause the reader again so the queue fills: what the writer has been acknowledged and the
    # reader has not taken is then only in the hub's durable store (SQLite on its PVC).
    _patch_loop_state(kube, ns, 1, "paused")
    poll(
        lambda: _status_when(
            kube,
            ns,
            lambda s: _loop(s, READER).get("state") == "paused" and (_queue_depth(s) or 0) >= 100,
        ),
        timeout=120, what="reader paused again and the queue filling", show=show,
    )  # fmt: skip
    hub_selector = f"ostinato.dev/workflow={WF},app.kubernetes.io/component=hub"
    old_hub = kube.get("pods", "-n", ns, "-l", hub_selector)["items"]
    assert len(old_hub) == 1, [p["metadata"]["name"] for p in old_hub]
    got_before_kill = max(_numbers(kube, ns, reader_pod, "got"))
    sent_before_kill = max(_numbers(kube, ns, writer_pod, "sent"))
    assert sent_before_kill - got_before_kill >= 100, (got_before_kill, sent_before_kill)
    killed = time.monotonic()
    kube.kubectl(
        "delete", "pod", old_hub[0]["metadata"]["name"], "-n", ns, "--grace-period=0", "--force"
    )

    def new_hub_ready() -> str | None:
        for pod in kube.get("pods", "-n", ns, "-l", hub_selector)["items"]:
            if pod["metadata"]["uid"] == old_hub[0]["metadata"]["uid"]:
                continue
            ready = [c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True":
                return str(pod["metadata"]["name"])
        return None

    poll(new_hub_ready, timeout=180, what="a new hub pod Ready", show=install.diagnose)
    print(f"e2e: hub pod killed to a new hub Ready in {time.monotonic() - killed:.1f} s")
    _patch_loop_state(kube, ns, 1, "running")
    # The writer goes on past the restart, through the new hub.
    poll(
        lambda: max(_numbers(kube, ns, writer_pod, "sent")) > sent_before_kill + 100 or None,
        timeout=180, what="the writer's acknowledged numbers going on after the hub restart",
        show=show,
    )  # fmt: skip
    poll(
        lambda: _loop(_status(kube, ns), READER).get("state") == "running" or None,
        timeout=90, what="reader running after the hub restart", show=show,
    )  # fmt: skip

    # Stop the writer at an iteration boundary, then every acknowledged number must reach the
    # reader (at least once: a redelivery after the restart may repeat some).
    _patch_loop_state(kube, ns, 0, "paused")
    poll(
        lambda: _loop(_status(kube, ns), WRITER).get("state") == "paused" or None,
        timeout=90, what="writer paused", show=show,
    )  # fmt: skip
    acknowledged = _numbers(kube, ns, writer_pod, "sent")
    assert acknowledged == list(range(len(acknowledged))), (
        "the writer's acknowledged numbers are not 0, 1, 2, ... in order"
    )

    def missing() -> set[int]:
        return set(acknowledged) - set(_numbers(kube, ns, reader_pod, "got"))

    poll(
        lambda: not missing() or None,
        timeout=120, what=f"all {len(acknowledged)} acknowledged numbers at the reader",
        show=lambda: f"missing {sorted(missing())[:20]} ...; status {show()}",
    )  # fmt: skip
    assert acknowledged[-1] > sent_before_kill + 100
    print(
        f"e2e: {len(acknowledged)} numbers acknowledged, every one at the reader, "
        f"{sent_before_kill - got_before_kill} of them in the durable queue when the hub died"
    )
    restarts = {
        p: [c["restartCount"] for c in kube.get("pod", p, "-n", ns)["status"]["containerStatuses"]]
        for p in (writer_pod, reader_pod)
    }
    assert restarts == {writer_pod: [0], reader_pod: [0]}, f"loop pods restarted: {restarts}"

    # -- delete the Workflow: every child goes ------------------------------------------
    deleting = time.monotonic()
    kube.kubectl("delete", "workflow", WF, "-n", ns, "--wait=true", "--timeout=120s", timeout=150)
    poll(
        lambda: not _children(kube, ns) or None,
        timeout=180, what="every child of the deleted Workflow gone",
        show=lambda: " ".join(_children(kube, ns)),
    )  # fmt: skip
    print(f"e2e: delete to no children left in {time.monotonic() - deleting:.1f} s")
