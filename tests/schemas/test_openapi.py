"""Every object the operator creates and the chart renders is valid Kubernetes 1.27 and later.

The project's own control plane is 1.20 (the newest Debian ships), while users run 1.27 and
later; kubernetes-validate carries the OpenAPI schemas of those releases, so each manifest is
checked against every one of them, strictly: an unknown field, a removed API version or a
wrong type fails here, long before a user's ``helm install`` or the operator's first create.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes_validate import utils as kv_utils

from ostinato import Workflow
from ostinato_operator._children import (
    Owner,
    config_map,
    hub_deployment,
    hub_pvc,
    hub_service,
    loop_pods,
    network_policies,
    secret,
)
from ostinato_operator._crd import build_crd
from ostinato_operator._keys import new_secret_data
from ostinato_operator._kube import Kube
from ostinato_operator._leader import LeaseHolder
from ostinato_operator._owners import _reference
from ostinato_operator._settings import OperatorSettings
from tests.helm.conftest import Render
from tests.operator.support import EXAMPLES, as_object, example

from .support import OLDEST, VERSIONS, check, release

SETTINGS = OperatorSettings(
    image="reg.example/ostinato:1",
    # Every part a NetworkPolicy can get: the operator's peer and a scraper with expressions.
    network_policy_operator_namespace="ostinato-system",
    network_policy_operator_pod_labels={"app.kubernetes.io/component": "operator"},
    network_policy_metrics_scraper_namespace_selector={"matchLabels": {"team": "monitoring"}},
    network_policy_metrics_scraper_pod_selector={
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["prometheus"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ]
    },
)
#: The same without a scraper: the loop pods' policy then admits nobody (an empty ingress).
NO_SCRAPER = OperatorSettings(image="reg.example/ostinato:1")

Manifest = dict[str, Any]


def test_the_schemas_reach_from_the_oldest_supported_to_the_newest_shipped() -> None:
    assert VERSIONS, "kubernetes-validate ships no schema of 1.27 or later"
    assert release(VERSIONS[0]) == OLDEST
    assert VERSIONS[-1] == kv_utils.latest_version()


def _workflows() -> Iterator[tuple[str, Manifest]]:
    """Every example, plus one with everything a Workflow can ask of its pods."""
    for path in EXAMPLES:
        yield path.name, as_object(yaml.safe_load(path.read_text()))
    full = as_object(example("k8s-pipeline.yaml"))
    full["metadata"]["name"] = "full"
    full["spec"]["image"] = "reg.example/nodes:2"
    for queue in full["spec"]["queues"]:
        queue["durable"] = True
    full["spec"]["loops"][0]["image"] = "reg.example/sensor:3"
    full["spec"]["loops"][1]["state"] = "paused"
    yield "full", full


def _operator_children() -> Iterator[tuple[str, Manifest]]:
    for label, obj in _workflows():
        owner, wf = Owner.of(obj), Workflow.model_validate(obj)
        yield f"{label}/ConfigMap", config_map(owner, wf)
        yield f"{label}/Secret", secret(owner, new_secret_data())
        yield f"{label}/Deployment", hub_deployment(owner, wf, SETTINGS)
        yield f"{label}/Service", hub_service(owner)
        pvc = hub_pvc(owner, wf, SETTINGS)
        if pvc is not None:
            yield f"{label}/PersistentVolumeClaim", pvc
        for name, pod in loop_pods(owner, wf, SETTINGS).items():
            yield f"{label}/Pod/{name}", pod
        for settings in (SETTINGS, NO_SCRAPER):
            for policy in network_policies(owner, settings):
                yield f"{label}/NetworkPolicy/{policy['metadata']['name']}", policy


def _event() -> Manifest:
    """The Event exactly as Kube.event sends it."""
    kube = Kube(kubernetes.client.ApiClient())
    kube.core = mock.Mock()
    owner = as_object(example("k8s-counter.yaml"))
    kube.event(owner, "Reconciled", "children created " + "x" * 2000, warning=True)
    ((namespace, body), _) = kube.core.create_namespaced_event.call_args
    assert namespace == owner["metadata"]["namespace"]
    event: Manifest = body
    return event


def _lease() -> Manifest:
    """The Lease exactly as LeaseHolder creates it (owned by the operator's Deployment)."""
    deployment = SimpleNamespace(metadata=SimpleNamespace(name="ostinato", uid="uid-d"))
    owner = _reference("apps/v1", "Deployment", deployment)
    holder = LeaseHolder(
        kubernetes.client.ApiClient(), "ostinato", "ops", 15, 5.0, identity="me", owner=owner
    )
    holder.leases = mock.Mock()
    holder.leases.read_namespaced_lease.side_effect = ApiException(status=404)
    assert holder.try_acquire()
    ((namespace, body), _) = holder.leases.create_namespaced_lease.call_args
    assert namespace == "ops"
    assert body["spec"]["holderIdentity"] == "me"
    assert body["metadata"]["ownerReferences"] == [owner]
    # The client adds these two from the API it is called through (coordination.k8s.io/v1).
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body}


def operator_objects() -> list[tuple[str, Manifest]]:
    return [
        *_operator_children(),
        ("Event", _event()),
        ("Lease", _lease()),
        ("CustomResourceDefinition", build_crd()),
    ]


#: Chart values that switch on every optional part the chart has.
EVERY_OPTION: dict[str, Any] = {
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"iam.example/role": "ops"}},
    "watch": {"namespaces": ["team-a", "team-b"]},
    "serviceMonitor": {"enabled": True, "force": True, "labels": {"release": "prom"}},
    "networkPolicy": {
        "enabled": True,
        "metricsScraper": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
        },
    },
    "podAnnotations": {"example/a": "b"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    },
}

CHART_CASES: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "every-option": EVERY_OPTION,
    "no-webhook-no-rbac": {
        "webhook": {"enabled": False},
        "rbac": {"create": False},
        "networkPolicy": {"enabled": False},
    },
}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_the_operator_creates(version: str) -> None:
    objects = operator_objects()
    kinds = {obj["kind"] for _, obj in objects}
    assert kinds >= {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "Pod",
        "Event",
        "Lease",
        "CustomResourceDefinition",
        "NetworkPolicy",
    }
    for label, obj in objects:
        check(copy.deepcopy(obj), version, label)


@pytest.mark.parametrize("case", sorted(CHART_CASES))
def test_every_object_the_chart_renders(render: Render, case: str) -> None:
    objects = render(CHART_CASES[case])
    assert objects
    if case == "every-option":
        assert ("monitoring.coreos.com/v1", "ServiceMonitor") in {
            (o["apiVersion"], o["kind"]) for o in objects
        }
    for version in VERSIONS:
        for obj in objects:
            check(obj, version, f"chart[{case}] {obj['metadata']['name']}")


def test_a_wrong_field_fails_thecheck() -> None:
    """The check can fail: the same Service with a field no Kubernetes has is refused."""
    owner = Owner.of(as_object(example("k8s-counter.yaml")))
    bad = hub_service(owner)
    bad["spec"]["clusterIPs"] = "10.0.0.1"  # a list in every release
    with pytest.raises(pytest.fail.Exception, match=r"spec\.clusterIPs"):
        check(bad, VERSIONS[-1], "bad service")
