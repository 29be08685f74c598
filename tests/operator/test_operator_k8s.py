"""The operator against a real kube-apiserver + etcd + controller-manager (no kubelet: pods are
objects that never run), under the chart's ServiceAccount so a missing permission fails here."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.k8s._util import free_port, wait_until
from ostinato_operator._keys import new_secret_data

from .conftest import Installed, Operator, run_operator
from .support import EXAMPLES, example

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def operator(installed: Installed) -> Iterator[Operator]:
    with run_operator(installed) as op:
        yield op


def _apply(op: Operator, ns: str, doc: dict[str, Any], check: bool = True) -> Any:
    return op.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc), check=check)


def _get(op: Operator, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = op.kubectl("get", "-n", ns, kind, name, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _pods(op: Operator, ns: str, wf: str, loop: str | None = None) -> dict[str, str]:
    """Loop pod name -> uid, for pods not being deleted."""
    selector = f"ostinato.dev/workflow={wf},app.kubernetes.io/component=loop"
    if loop:
        selector += f",ostinato.dev/loop={loop}"
    out = json.loads(op.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout)
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in out["items"]
        if not p["metadata"].get("deletionTimestamp")
    }


def _expected_pods(doc: dict[str, Any]) -> set[str]:
    name = doc["metadata"]["name"]
    return {
        f"{name}-{lp['name']}-{r}"
        for lp in doc["spec"]["loops"]
        if lp.get("state", "running") != "stopped"
        for r in range(lp.get("replicas", 1))
    }


def _events(op: Operator, ns: str, wf: str) -> list[dict[str, Any]]:
    out = json.loads(
        op.kubectl(
            "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={wf}", "-o", "json"
        ).stdout
    )
    items: list[dict[str, Any]] = out["items"]
    return items


def _wait_children(op: Operator, ns: str, doc: dict[str, Any]) -> dict[str, Any]:
    name = doc["metadata"]["name"]
    want = _expected_pods(doc)
    wait_until(
        lambda: True if set(_pods(op, ns, name)) == want else None,
        timeout=60,
        what=f"pods of {name}",
    )
    wf = wait_until(
        lambda: (
            (
                (w := _get(op, ns, "workflow", name))
                and w.get("status", {}).get("observedGeneration") == w["metadata"]["generation"]
                and w.get("status", {}).get("phase")
                and w
            )
            or None
        ),
        timeout=30,
        what=f"status of {name}",
    )
    return wf


def _owned_by(obj: dict[str, Any], wf: dict[str, Any]) -> None:
    refs = obj["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs] == [
        ("Workflow", wf["metadata"]["name"], wf["metadata"]["uid"], True)
    ]
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "ostinato-operator"
    assert labels["ostinato.dev/workflow"] == wf["metadata"]["name"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_gets_all_its_children(
    operator: Operator, namespace: str, path: Path
) -> None:
    ns, doc = namespace, yaml.safe_load(path.read_text())
    name = doc["metadata"]["name"]
    _apply(operator, ns, doc)
    wf = _wait_children(operator, ns, doc)
    assert wf["status"]["phase"] == "Pending"  # no hub answers: pods never run here
    conditions = {c["type"]: c for c in wf["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "HubStarting"

    cm = _get(operator, ns, "configmap", f"{name}-spec")
    assert cm is not None
    _owned_by(cm, wf)
    stored = yaml.safe_load(cm["data"]["workflow.yaml"])
    assert stored["spec"]["loops"][0]["name"] == doc["spec"]["loops"][0]["name"]

    sec = _get(operator, ns, "secret", f"{name}-curve")
    assert sec is not None
    _owned_by(sec, wf)
    assert len(sec["data"]) == 5  # four CURVE keys and the control token
    assert "OSTINATO_CONTROL_TOKEN" in sec["data"]
    assert not any(v in json.dumps(wf) for v in sec["data"].values())
    token = base64.b64decode(sec["data"]["OSTINATO_CONTROL_TOKEN"]).decode()
    assert not any(token in json.dumps(e) for e in _events(operator, ns, name))

    dep = _get(operator, ns, "deployment", f"{name}-hub")
    assert dep is not None
    _owned_by(dep, wf)
    hub = dep["spec"]["template"]["spec"]["containers"][0]
    assert hub["image"] == "localhost/ostinato:test"
    assert hub["args"][0] == "hub"
    svc = _get(operator, ns, "service", f"{name}-hub")
    assert svc is not None
    _owned_by(svc, wf)
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"zmq": 5555, "http": 8080}

    # On by default: the hub's policy and the loops' (their rules: test_network_policy_k8s.py).
    for policy in (f"{name}-hub", f"{name}-loops"):
        netpol = _get(operator, ns, "networkpolicy", policy)
        assert netpol is not None, policy
        _owned_by(netpol, wf)

    pvc = _get(operator, ns, "pvc", f"{name}-hub-state")
    durable = any(q.get("durable") for q in doc["spec"].get("queues", []))
    assert (pvc is not None) == durable
    if pvc is not None:
        _owned_by(pvc, wf)

    for pod_name in _expected_pods(doc):
        pod = _get(operator, ns, "pod", pod_name)
        assert pod is not None
        _owned_by(pod, wf)
        c = pod["spec"]["containers"][0]
        assert c["args"][0] == "loop"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["metadata"]["annotations"]["ostinato.dev/spec-hash"]

    reasons = {e["reason"] for e in _events(operator, ns, name)}
    assert "Created" in reasons
    table = operator.kubectl("get", "owf", "-n", ns, "-o", "wide").stdout
    assert table.split()[:8] == [
        "NAME",
        "PHASE",
        "LOOPS",
        "AGE",
        "ITERATIONS/S",
        "ERRORS",
        "UPDATED",
        "MESSAGE",
    ]
    assert f"0/{len(doc['spec']['loops'])}" in table


def test_kubectl_explain_uses_the_descriptions(operator: Operator) -> None:
    out = operator.kubectl("explain", "workflow.spec.loops").stdout
    assert "Unique within the workflow" in out
    assert "replicas" in out


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("workflow.spec.loops.producer", ["class", "config", "kind", "name", "onError", "queue"]),
        ("workflow.spec.loops.nodes.queue", ["read", "write"]),
        ("workflow.spec.loops.resources", ["limits", "requests"]),
        ("workflow.spec.loops.circuitBreaker", ["consecutiveFailures", "cooldownSeconds"]),
    ],
)
def test_kubectl_explain_documents_optional_objects(
    operator: Operator, path: str, fields: list[str]
) -> None:
    """Optional objects were published without their fields (`nullable` has no OpenAPI v2
    form), so explain listed nothing under them."""
    out = operator.kubectl("explain", path).stdout
    assert "FIELDS:" in out, out
    for name in fields:
        assert re.search(rf"^   {name}\t", out, re.MULTILINE), f"{name} not in:\n{out}"


def test_a_null_optional_object_is_still_accepted_as_unset(
    operator: Operator, namespace: str
) -> None:
    """Without `nullable` the API server drops the null instead of refusing it."""
    doc = example("k8s-counter.yaml")
    doc["spec"]["loops"][1]["resources"] = None
    doc["spec"]["loops"][1]["maxIterations"] = None
    _apply(operator, namespace, doc)
    wf = _get(operator, namespace, "workflow", "counter")
    assert wf is not None
    assert "resources" not in wf["spec"]["loops"][1]
    assert "maxIterations" not in wf["spec"]["loops"][1]


def test_a_deleted_loop_pod_is_recreated(operator: Operator, namespace: str) -> None:
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    before = _pods(operator, ns, "counter")
    operator.kubectl("delete", "pod", "-n", ns, "counter-reader-0", "--wait=false")
    after = wait_until(
        lambda: (
            (
                (p := _pods(operator, ns, "counter")).get("counter-reader-0")
                not in (None, before["counter-reader-0"])
                and p
            )
            or None
        ),
        timeout=30,
        what="a new counter-reader-0",
    )
    assert after["counter-writer-0"] == before["counter-writer-0"]


def test_a_finished_loop_pod_is_kept_and_a_stopped_one_replaced(
    operator: Operator, namespace: str
) -> None:
    """A loop that ended by itself (maxIterations) must not run, and send its data, again; one
    that exited because it was told to stop (a hub's stale desired state) must run again."""
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    before = _pods(operator, ns, "counter")
    pod = _get(operator, ns, "pod", "counter-writer-0")
    assert pod is not None
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--final-state-file") + 1] == "/dev/termination-log"
    # No kubelet here: what the kubelet would write, through the status API: both exited 0,
    # with the final state `ostinato loop` wrote to the termination log as their message.
    for name, final in (
        ("counter-writer-0", "finished: reached its limit of 20 iteration(s)"),
        ("counter-reader-0", "stopped: drained 0, abandoned 0 non-blocking call(s)"),
    ):
        terminated = {"exitCode": 0, "reason": "Completed", "message": final}
        status = {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "loop",
                    "image": "x",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        operator.kubectl(
            "patch", "pod", "-n", ns, name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip
    # The stopped reader is replaced: a reconcile ran after both were visible ...
    wait_until(
        lambda: (
            True
            if _pods(operator, ns, "counter").get("counter-reader-0")
            not in (None, before["counter-reader-0"])
            else None
        ),
        timeout=30,
        what="a new counter-reader-0",
    )
    # ... and kept the finished writer as it was.
    writer = _get(operator, ns, "pod", "counter-writer-0")
    assert writer is not None
    assert writer["metadata"]["uid"] == before["counter-writer-0"]
    assert writer["status"]["phase"] == "Succeeded"


def test_scaling_a_loop_touches_only_the_pods_it_adds_or_removes(
    operator: Operator, namespace: str
) -> None:
    """A change of replicas restarted the hub (its queue contents lost) and every replica."""
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    before = _pods(operator, ns, "counter")
    hub = _get(operator, ns, "deployment", "counter-hub")
    assert hub is not None
    for replicas in (3, 1):
        scaled = copy.deepcopy(doc)
        scaled["spec"]["loops"][1]["replicas"] = replicas  # the reader
        _apply(operator, ns, scaled)
        _wait_children(operator, ns, scaled)
        pods = _pods(operator, ns, "counter")
        assert set(pods) == _expected_pods(scaled)
        for name, uid in before.items():
            if name in pods:
                assert pods[name] == uid, f"{name} was replaced"
        now = _get(operator, ns, "deployment", "counter-hub")
        assert now is not None
        assert now["metadata"]["generation"] == hub["metadata"]["generation"]


def test_a_secret_from_before_control_tokens_gets_one_once_and_keeps_its_keys(
    operator: Operator, namespace: str
) -> None:
    """A Workflow whose Secret an older operator made (the four CURVE keys only): the token is
    added, once, and a later reconcile (a spec change) neither replaces it nor the keys."""
    ns, doc = namespace, example("k8s-counter.yaml")
    old_data = {k: v for k, v in new_secret_data().items() if k != "OSTINATO_CONTROL_TOKEN"}
    old = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "counter-curve", "namespace": ns},
        "stringData": old_data,
    }
    operator.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(old))
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)

    def data() -> dict[str, str]:
        sec = _get(operator, ns, "secret", "counter-curve")
        assert sec is not None
        return {k: base64.b64decode(v).decode() for k, v in sec["data"].items()}

    first = data()
    assert {k: first[k] for k in old_data} == old_data  # the keys the loops hold: untouched
    token = first["OSTINATO_CONTROL_TOKEN"]
    assert len(token) >= 32
    hub = _get(operator, ns, "deployment", "counter-hub")
    assert hub is not None
    env = hub["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OSTINATO_CONTROL_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "counter-curve", "key": "OSTINATO_CONTROL_TOKEN"}}} in env  # fmt: skip

    changed = copy.deepcopy(doc)
    changed["spec"]["loops"][1]["state"] = "paused"  # an update: the children reconciled again
    _apply(operator, ns, changed)
    wait_until(
        lambda: (
            (
                (w := _get(operator, ns, "workflow", "counter"))
                and w.get("status", {}).get("observedGeneration") == w["metadata"]["generation"]
            )
            or None
        ),
        timeout=30,
        what="the update reconciled",
    )
    assert data() == first
    reasons = [e["message"] for e in _events(operator, ns, "counter") if e["reason"] == "Created"]
    assert reasons
    assert all(token not in m for m in reasons)
    assert "the control token in Secret counter-curve" in reasons[0]


def test_patching_one_loop_replaces_only_its_pods(operator: Operator, namespace: str) -> None:
    ns, doc = namespace, example("pipeline.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    before = _pods(operator, ns, "pipeline")
    changed = copy.deepcopy(doc)
    changed["spec"]["loops"][2]["nodes"][1]["config"]["every"] = 999  # archive, 2 replicas
    _apply(operator, ns, changed)
    archive = {"pipeline-archive-0", "pipeline-archive-1"}
    after = wait_until(
        lambda: (
            (
                (p := _pods(operator, ns, "pipeline")).keys() == before.keys()
                and all(p[n] != before[n] for n in archive)
                and p
            )
            or None
        ),
        timeout=30,
        what="new archive pods",
    )
    for name in before.keys() - archive:
        assert after[name] == before[name], f"{name} was replaced"
    replaced = [
        e["message"] for e in _events(operator, ns, "pipeline") if e["reason"] == "LoopPodReplaced"
    ]
    assert replaced
    assert all("sensor" not in m and "dashboard" not in m for m in replaced)


def test_stop_removes_a_loops_pods_and_running_brings_them_back(
    operator: Operator, namespace: str
) -> None:
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    patch = json.dumps([{"op": "add", "path": "/spec/loops/1/state", "value": "stopped"}])
    operator.kubectl("patch", "workflow", "counter", "-n", ns, "--type=json", "-p", patch)
    wait_until(
        lambda: True if set(_pods(operator, ns, "counter")) == {"counter-writer-0"} else None,
        timeout=30,
        what="the reader's pod to go",
    )
    wf = wait_until(
        lambda: (
            (
                (w := _get(operator, ns, "workflow", "counter"))
                and w["status"].get("observedGeneration") == w["metadata"]["generation"]
                and any(lp["state"] == "stopped" for lp in w["status"].get("loops", []))
                and w
            )
            or None
        ),
        timeout=30,
        what="status saying the reader is stopped",
    )
    loops = {lp["name"]: lp for lp in wf["status"]["loops"]}
    assert loops["reader"]["desiredState"] == "stopped"
    assert loops["reader"]["replicas"] == 0
    assert wf["status"]["ready"].endswith("/1")
    patch = json.dumps([{"op": "replace", "path": "/spec/loops/1/state", "value": "running"}])
    operator.kubectl("patch", "workflow", "counter", "-n", ns, "--type=json", "-p", patch)
    wait_until(
        lambda: True if "counter-reader-0" in _pods(operator, ns, "counter") else None,
        timeout=30,
        what="the reader's pod to come back",
    )


INVALID = [
    # Loops are a list keyed by name in the CRD: the API server refuses a second loop of one
    # name itself, before the webhook (whose message, `spec.loops[1].name: duplicate loop name
    # 'writer'`, `ostinato validate` still gives).
    (
        lambda d: d["spec"]["loops"][1].update(name="writer"),
        'spec.loops[1]: Duplicate value: map[string]interface {}{"name":"writer"}',
    ),
    (
        lambda d: d["spec"]["loops"][0]["nodes"][0].update(queue={"write": "nope"}),
        "spec.loops[0].nodes[0].queue.write: queue 'nope' is not declared in spec.queues",
    ),
    (
        lambda d: d["spec"]["loops"][0]["producer"]["config"].update(periodSeconds=-1),
        "spec.loops[0].producer.config.periodSeconds",
    ),
    # Ranges and enums are in the CRD's schema: the API server rejects those itself, before the
    # webhook, naming the field its own way (no list index on 1.20).
    (lambda d: d["spec"]["loops"][0].update(replicas=0), "spec.loops.replicas"),
    (lambda d: d["spec"]["loops"][0].update(pool="fiber"), "spec.loops.pool"),
    # Within the CRD's bounds (replicas <= 1000) but over the operator's pod budget: this one
    # made 1000 pods and took the operator down. The default budget, 50, applies here.
    (
        lambda d: d["spec"]["loops"][1].update(replicas=1000),
        "spec.loops: 1001 loop pods (writer 1, reader 1000) exceed maxPodsPerWorkflow, the "
        "operator's limit of 50 loop pods per Workflow",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "named"),
    INVALID,
    ids=["duplicate", "unknown-queue", "config", "range", "enum", "pod-budget"],
)
def test_invalid_manifests_are_rejected_at_apply_with_the_field_named(
    operator: Operator, namespace: str, mutate: Any, named: str
) -> None:
    doc = copy.deepcopy(example("k8s-counter.yaml"))
    mutate(doc)
    out = _apply(operator, namespace, doc, check=False)
    assert out.returncode != 0
    assert named in out.stderr, out.stderr
    assert _get(operator, namespace, "workflow", "counter") is None


def test_unknown_fields_kubectl_did_not_check_are_refused(
    operator: Operator, namespace: str
) -> None:
    """`kubectl apply --validate=false` sent a snake_case field: the API server pruned it and
    the webhook, seeing the pruned object, admitted it. The copy kubectl keeps of what it sent
    names it."""
    ns, doc = namespace, example("k8s-counter.yaml")
    typo = copy.deepcopy(doc)
    typo["spec"]["loops"][0]["max_iterations"] = 5
    args = ("apply", "--validate=false", "-n", ns, "-f", "-")
    out = operator.kubectl(*args, input=yaml.safe_dump(typo), check=False)
    assert out.returncode != 0
    assert (
        "spec.loops[0].max_iterations: unknown field; did you mean maxIterations?" in out.stderr
    ), out.stderr
    assert _get(operator, ns, "workflow", "counter") is None
    # the same on an update of an existing Workflow, which keeps its generation
    _apply(operator, ns, doc)
    typo["spec"]["loops"][1]["replica"] = 2
    out = operator.kubectl(*args, input=yaml.safe_dump(typo), check=False)
    assert out.returncode != 0
    assert "spec.loops[1].replica: unknown field; did you mean replicas?" in out.stderr
    wf = _get(operator, ns, "workflow", "counter")
    assert wf is not None
    assert wf["metadata"]["generation"] == 1
    # a later patch is not blamed for anything: kubectl's copy is the valid one
    patch = json.dumps([{"op": "replace", "path": "/spec/loops/1/replicas", "value": 2}])
    operator.kubectl("patch", "workflow", "counter", "-n", ns, "--type=json", "-p", patch)


def test_an_operator_that_is_down_blocks_no_writes(operator: Operator, namespace: str) -> None:
    """While the operator crash-looped, every apply and patch of any Workflow failed with
    `failed calling webhook ... connection refused`. Its registration, pointed at a port
    nobody serves (for this one namespace only), must let writes through."""
    plane = operator.plane
    registered = json.loads(
        operator.kubectl(
            "get", "validatingwebhookconfiguration", "validate.ostinato.dev", "-o", "json"
        ).stdout
    )
    (hook,) = registered["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    operator.kubectl("label", "namespace", namespace, f"ostinato-test-dead-webhook={namespace}")
    dead = copy.deepcopy(hook)
    dead["clientConfig"] = {
        "url": f"https://127.0.0.1:{free_port()}/",
        "caBundle": hook["clientConfig"]["caBundle"],
    }
    dead["namespaceSelector"] = {"matchLabels": {"ostinato-test-dead-webhook": namespace}}
    dead["timeoutSeconds"] = 5
    copy_name = f"dead-{namespace}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": copy_name},
        "webhooks": [{**dead, "name": f"dead.{namespace}.ostinato.dev"}],
    }
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(config))
    try:
        doc = example("k8s-counter.yaml")
        out = _apply(operator, namespace, doc, check=False)
        assert out.returncode == 0, out.stderr
        patch = json.dumps([{"op": "replace", "path": "/spec/loops/1/replicas", "value": 2}])
        operator.kubectl(
            "patch", "workflow", "counter", "-n", namespace, "--type=json", "-p", patch
        )
    finally:
        plane.kubectl("delete", "validatingwebhookconfiguration", copy_name, check=False)


def test_an_invalid_update_is_rejected_and_the_object_kept(
    operator: Operator, namespace: str
) -> None:
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    bad = copy.deepcopy(doc)
    bad["spec"]["loops"][1]["producer"]["queue"] = {"read": "missing"}
    out = _apply(operator, ns, bad, check=False)
    assert out.returncode != 0
    assert "spec.loops[1].producer.queue.read" in out.stderr
    wf = _get(operator, ns, "workflow", "counter")
    assert wf is not None
    assert wf["metadata"]["generation"] == 1


def test_deleting_the_workflow_removes_every_child(operator: Operator, namespace: str) -> None:
    if not operator.plane.with_controller_manager:
        pytest.skip("garbage collection needs kube-controller-manager, unavailable here")
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    wf = _get(operator, ns, "workflow", "counter")
    assert wf is not None
    assert not wf["metadata"].get("finalizers"), "nothing needs a finalizer"
    operator.kubectl("delete", "workflow", "counter", "-n", ns, "--wait=true", "--timeout=30s")

    def gone() -> bool | None:
        for kind, name in [
            ("configmap", "counter-spec"),
            ("secret", "counter-curve"),
            ("deployment", "counter-hub"),
            ("service", "counter-hub"),
            ("pvc", "counter-hub-state"),
            ("networkpolicy", "counter-hub"),
            ("networkpolicy", "counter-loops"),
        ]:
            obj = _get(operator, ns, kind, name)
            if obj is not None and not obj["metadata"].get("deletionTimestamp"):
                return None
        return True if not _pods(operator, ns, "counter") else None

    wait_until(gone, timeout=60, what="garbage collection of the children")


def _patch_pod_status(op: Operator, ns: str, name: str, status: dict[str, Any]) -> None:
    """What the scheduler or the kubelet would write (there is neither here)."""
    op.kubectl(
        "patch",
        "pod",
        "-n",
        ns,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def _degraded_reason(op: Operator, ns: str, name: str, reason: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        wf = _get(op, ns, "workflow", name)
        conditions = {c["type"]: c for c in (wf or {}).get("status", {}).get("conditions", [])}
        degraded = conditions.get("Degraded", {})
        ok = degraded.get("status") == "True" and degraded.get("reason") == reason
        return wf if ok else None

    found: dict[str, Any] = wait_until(seen, timeout=60, what=f"Degraded with reason {reason}")
    return found


def test_the_hub_pods_own_failures_become_the_reason(operator: Operator, namespace: str) -> None:
    """The issue: a hub whose volume never binds, or that crash-loops on an import error,
    showed only `HubStarting: ... Connection refused` with Degraded=False."""
    ns, doc = namespace, example("k8s-counter.yaml")
    _apply(operator, ns, doc)
    _wait_children(operator, ns, doc)
    selector = "ostinato.dev/workflow=counter,app.kubernetes.io/component=hub"
    hub = wait_until(
        lambda: (
            json.loads(
                operator.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
            )["items"]
            or None
        ),
        timeout=60,
        what="the hub's pod (made by the Deployment's ReplicaSet)",
    )[0]["metadata"]["name"]
    scheduled = {"type": "PodScheduled", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    why = "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."
    unschedulable = {**scheduled, "status": "False", "reason": "Unschedulable", "message": why}
    _patch_pod_status(operator, ns, hub, {"conditions": [unschedulable]})
    # The claim (no PersistentVolume, no provisioner here) is Pending: that is the cause.
    wf = _degraded_reason(operator, ns, "counter", "HubVolumePending")
    assert wf["status"]["phase"] == "Degraded"
    assert "PersistentVolumeClaim counter-hub-state is Pending" in wf["status"]["message"]

    crash = {
        "name": "hub",
        "image": "localhost/ostinato:test",
        "imageID": "",
        "ready": False,
        "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": "Traceback (most recent call last):\n"
                "ModuleNotFoundError: No module named 'mypkg'\n",
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:01Z",
            }
        },
    }
    _patch_pod_status(
        operator,
        ns,
        hub,
        {
            "phase": "Running",
            "conditions": [{**scheduled, "status": "True"}],
            "containerStatuses": [crash],
        },
    )
    wf = _degraded_reason(operator, ns, "counter", "HubCrashLooping")
    assert "No module named 'mypkg'" in wf["status"]["message"]
    # kubectl get says why, without -o wide.
    table = operator.kubectl("get", "owf", "counter", "-n", ns).stdout
    assert table.split()[:6] == ["NAME", "PHASE", "LOOPS", "AGE", "MESSAGE", "counter"]
    assert f"HubCrashLooping: pod {hub} container hub is crash-looping" in table
    events = _events(operator, ns, "counter")
    assert any(e["reason"] == "Degraded" and "HubVolumePending" in e["message"] for e in events)
    assert any(e["reason"] == "HubCrashLooping" and "mypkg" in e["message"] for e in events)
