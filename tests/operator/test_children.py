"""The pure builders: every child of every example Workflow, and which changes replace what."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from ostinato import Workflow
from ostinato_operator._children import (
    HASH_ANNOTATION,
    Owner,
    config_map,
    hub_deployment,
    hub_pvc,
    hub_service,
    loop_pods,
    secret,
)
from ostinato_operator._keys import new_secret_data
from ostinato_operator._settings import OperatorSettings

from .support import EXAMPLES, as_object, example

SETTINGS = OperatorSettings(image="reg.example/ostinato:1", termination_margin_seconds=7)


def _build(doc: dict[str, Any]) -> tuple[Owner, Workflow]:
    obj = as_object(doc)
    return Owner.of(obj), Workflow.model_validate(obj)


def _common(obj: dict[str, Any], owner: Owner, component: str) -> None:
    meta = obj["metadata"]
    assert meta["namespace"] == owner.namespace
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "ostinato.dev/v1alpha1",
            "kind": "Workflow",
            "name": owner.name,
            "uid": owner.uid,
            "controller": True,
        }
    ]
    labels = meta["labels"]
    assert labels["app.kubernetes.io/name"] == "ostinato"
    assert labels["app.kubernetes.io/instance"] == owner.name
    assert labels["app.kubernetes.io/part-of"] == owner.name
    assert labels["app.kubernetes.io/managed-by"] == "ostinato-operator"
    assert labels["app.kubernetes.io/component"] == component
    assert labels["ostinato.dev/workflow"] == owner.name


def _restricted(pod_spec: dict[str, Any]) -> None:
    psc = pod_spec["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod_spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        # A crash's log tail becomes lastState.terminated.message, which status shows.
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts["/tmp"] == "tmp"
        assert mounts["/etc/ostinato/workflow"] == "workflow"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert pod_spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_child_of_every_example(path: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    owner, wf = _build(doc)
    name = owner.name

    cm = config_map(owner, wf)
    _common(cm, owner, "config")
    assert cm["metadata"]["name"] == f"{name}-spec"
    again = Workflow.model_validate(yaml.safe_load(cm["data"]["workflow.yaml"]))
    assert again.spec == wf.spec
    assert again.metadata.name == name

    data = new_secret_data()
    sec = secret(owner, data)
    _common(sec, owner, "curve-keys")
    assert sec["metadata"]["name"] == f"{name}-curve"
    keys = {
        "OSTINATO_CURVE_SERVER_PUBLIC",
        "OSTINATO_CURVE_SERVER_SECRET",
        "OSTINATO_CURVE_CLIENT_PUBLIC",
        "OSTINATO_CURVE_CLIENT_SECRET",
    }
    assert set(sec["stringData"]) == {*keys, "OSTINATO_CONTROL_TOKEN"}
    assert all(len(sec["stringData"][k]) == 40 for k in keys)
    assert len(sec["stringData"]["OSTINATO_CONTROL_TOKEN"]) == 43  # 32 random bytes
    assert (
        new_secret_data()["OSTINATO_CONTROL_TOKEN"] != sec["stringData"]["OSTINATO_CONTROL_TOKEN"]
    )

    dep = hub_deployment(owner, wf, SETTINGS)
    _common(dep, owner, "hub")
    assert dep["metadata"]["name"] == f"{name}-hub"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    template = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    _restricted(template["spec"])
    hub = template["spec"]["containers"][0]
    assert hub["image"] == "reg.example/ostinato:1"
    assert hub["args"][:2] == ["hub", "/etc/ostinato/workflow/workflow.yaml"]
    assert "--http-port" in hub["args"]
    # Its console is read-only: the operator owns the desired states (docs/kubernetes.md).
    assert hub["args"][-2:] == ["--ui", "--ui-managed-by-operator"]
    assert "--state-dir" in hub["args"]
    assert {e["name"] for e in hub["env"]} == set(data)  # the control token too
    hub_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in hub["env"]}
    assert hub_env["OSTINATO_CONTROL_TOKEN"] == {
        "name": f"{name}-curve",
        "key": "OSTINATO_CONTROL_TOKEN",
    }
    assert {p["name"]: p["containerPort"] for p in hub["ports"]} == {"zmq": 5555, "http": 8080}

    svc = hub_service(owner)
    _common(svc, owner, "hub")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"zmq": 5555, "http": 8080}
    assert svc["spec"]["selector"] == template["metadata"]["labels"]

    durable = any(q.durable for q in wf.spec.queues)
    pvc = hub_pvc(owner, wf, SETTINGS)
    state = {v["name"]: v for v in template["spec"]["volumes"]}["state"]
    if durable:
        assert pvc is not None
        _common(pvc, owner, "hub")
        assert pvc["metadata"]["name"] == f"{name}-hub-state"
        assert state["persistentVolumeClaim"] == {"claimName": f"{name}-hub-state"}
    else:
        assert pvc is None
        assert state == {"name": "state", "emptyDir": {}}

    pods = loop_pods(owner, wf, SETTINGS)
    expected = {f"{name}-{lp.name}-{r}" for lp in wf.spec.loops for r in range(lp.max_replicas)}
    assert set(pods) == expected
    for pod_name, pod in pods.items():
        _common(pod, owner, "loop")
        labels = pod["metadata"]["labels"]
        loop = next(lp for lp in wf.spec.loops if lp.name == labels["ostinato.dev/loop"])
        replica = int(labels["ostinato.dev/replica"])
        assert pod_name == f"{name}-{loop.name}-{replica}"
        assert len(pod["metadata"]["annotations"][HASH_ANNOTATION]) == 16
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
        spec = pod["spec"]
        _restricted(spec)
        assert spec["terminationGracePeriodSeconds"] == int(loop.drain_timeout_seconds) + 7
        c = spec["containers"][0]
        assert c["args"] == [
            "loop",
            "/etc/ostinato/workflow/workflow.yaml",
            "--loop",
            loop.name,
            "--replica",
            str(replica),
            "--hub",
            f"tcp://{name}-hub.ns1.svc:5555",
            "--http-port",
            "8080",
            "--final-state-file",
            "/dev/termination-log",
        ]
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
        assert "OSTINATO_CURVE_SERVER_SECRET" not in env
        assert "OSTINATO_CONTROL_TOKEN" not in env  # loops serve no /control
        assert env["OSTINATO_CURVE_CLIENT_SECRET"] == {
            "name": f"{name}-curve",
            "key": "OSTINATO_CURVE_CLIENT_SECRET",
        }
        if loop.resources is not None:
            assert c["resources"]["requests"] == dict(loop.resources.requests)


def _hashes(doc: dict[str, Any]) -> dict[str, str]:
    owner, wf = _build(doc)
    return {
        n: p["metadata"]["annotations"][HASH_ANNOTATION]
        for n, p in loop_pods(owner, wf, SETTINGS).items()
    }


def test_changing_one_loop_changes_only_its_pods_hashes() -> None:
    doc = example("pipeline.yaml")
    before = _hashes(doc)
    changed = copy.deepcopy(doc)
    changed["spec"]["loops"][1]["nodes"][0]["config"]["alpha"] = 0.9  # dashboard
    after = _hashes(changed)
    differ = {n for n in before if before[n] != after[n]}
    assert differ == {"pipeline-dashboard-0"}


def test_pausing_changes_no_pod_and_not_the_hub() -> None:
    doc = example("pipeline.yaml")
    paused = copy.deepcopy(doc)
    paused["spec"]["state"] = "paused"
    paused["spec"]["loops"][0]["state"] = "paused"
    assert _hashes(paused) == _hashes(doc)
    owner, wf = _build(doc)
    _, wf_paused = _build(paused)

    def hub_hash(w: Workflow) -> str:
        meta = hub_deployment(owner, w, SETTINGS)["spec"]["template"]["metadata"]
        return str(meta["annotations"][HASH_ANNOTATION])

    assert hub_hash(wf) == hub_hash(wf_paused)


def test_scaling_a_loop_adds_or_removes_only_its_pods_and_keeps_the_hub() -> None:
    """Changing replicas restarted the hub (its queues lost) and every replica of the loop."""
    doc = example("pipeline.yaml")  # archive: 2 replicas
    before = _hashes(doc)
    owner, wf = _build(doc)
    for replicas in (3, 1):
        scaled = copy.deepcopy(doc)
        scaled["spec"]["loops"][2]["replicas"] = replicas
        after = _hashes(scaled)
        kept = set(before) & set(after)
        assert {n for n in kept if before[n] != after[n]} == set()
        assert set(after) ^ set(before) == (
            {"pipeline-archive-2"} if replicas == 3 else {"pipeline-archive-1"}
        )
        _, wf_scaled = _build(scaled)

        def hub_hash(w: Workflow) -> str:
            meta = hub_deployment(owner, w, SETTINGS)["spec"]["template"]["metadata"]
            return str(meta["annotations"][HASH_ANNOTATION])

        assert hub_hash(wf_scaled) == hub_hash(wf)


def test_a_loop_image_or_resources_change_replaces_that_loop_only() -> None:
    doc = example("k8s-counter.yaml")
    before = _hashes(doc)
    changed = copy.deepcopy(doc)
    changed["spec"]["loops"][0]["resources"]["limits"]["memory"] = "512Mi"
    changed["spec"]["loops"][1]["image"] = "reg.example/mine:2"
    owner, wf = _build(changed)
    pods = loop_pods(owner, wf, SETTINGS)
    assert pods["counter-reader-0"]["spec"]["containers"][0]["image"] == "reg.example/mine:2"
    after = _hashes(changed)
    assert {n for n in before if before[n] != after[n]} == {"counter-writer-0", "counter-reader-0"}


def test_stopped_loops_and_workflows_have_no_pods() -> None:
    doc = example("pipeline.yaml")
    doc["spec"]["loops"][2]["state"] = "stopped"
    owner, wf = _build(doc)
    assert not any(n.startswith("pipeline-archive-") for n in loop_pods(owner, wf, SETTINGS))
    doc["spec"]["state"] = "stopped"
    owner, wf = _build(doc)
    assert loop_pods(owner, wf, SETTINGS) == {}


def test_workflow_image_applies_to_hub_and_loops_without_their_own() -> None:
    doc = example("demo.yaml")
    doc["spec"]["image"] = "reg.example/team:3"
    doc["spec"]["loops"][0]["image"] = "reg.example/loop:4"
    owner, wf = _build(doc)
    hub = hub_deployment(owner, wf, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert hub["image"] == "reg.example/team:3"
    images = {
        p["metadata"]["labels"]["ostinato.dev/loop"]: p["spec"]["containers"][0]["image"]
        for p in loop_pods(owner, wf, SETTINGS).values()
    }
    assert images == {
        "sensor": "reg.example/loop:4",
        "counter": "reg.example/team:3",
        "worker": "reg.example/team:3",
    }
