"""The pure NetworkPolicy builder: exactly which peers reach which port of a Workflow's pods."""

from __future__ import annotations

from typing import Any

import pytest

from ostinato import Workflow
from ostinato_operator._children import (
    Owner,
    hub_deployment,
    labels,
    loop_pods,
    network_policies,
)
from ostinato_operator._settings import OperatorSettings

from .support import EXAMPLES, as_object, example

OPERATOR_LABELS = {
    "app.kubernetes.io/name": "ostinato",
    "app.kubernetes.io/instance": "ostinato",
    "app.kubernetes.io/component": "operator",
}
SCRAPER_NAMESPACES = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
SCRAPER_PODS = {
    "matchExpressions": [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["prometheus"]},
        {"key": "canary", "operator": "DoesNotExist"},
    ]
}
#: What the chart gives an operator installed in ostinato-system with a Prometheus named.
CHART_LIKE = OperatorSettings(
    network_policy_operator_namespace="ostinato-system",
    network_policy_operator_pod_labels=OPERATOR_LABELS,
    network_policy_metrics_scraper_namespace_selector=SCRAPER_NAMESPACES,
    network_policy_metrics_scraper_pod_selector=SCRAPER_PODS,
)


def _build(doc: dict[str, Any]) -> tuple[Owner, Workflow]:
    obj = as_object(doc)
    return Owner.of(obj), Workflow.model_validate(obj)


def _selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    """Kubernetes' label selector semantics (an empty selector selects everything)."""
    if not selector.get("matchLabels", {}).items() <= pod_labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in pod_labels and pod_labels[key] in values,
            "NotIn": key not in pod_labels or pod_labels[key] not in values,
            "Exists": key in pod_labels,
            "DoesNotExist": key not in pod_labels,
        }[op]
        if not ok:
            return False
    return True


def _admits(
    policy: dict[str, Any],
    port: int,
    pod_labels: dict[str, str],
    namespace: str,
    namespace_labels: dict[str, str] | None = None,
) -> bool:
    """Whether one ingress rule of ``policy`` admits that pod to ``port`` (policy namespace:
    ``ns1``; a peer without namespaceSelector means the policy's own namespace)."""
    ns_labels = {"kubernetes.io/metadata.name": namespace, **(namespace_labels or {})}
    for rule in policy["spec"]["ingress"]:
        if {"protocol": "TCP", "port": port} not in rule["ports"]:
            continue
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                in_namespace = _selects(peer["namespaceSelector"], ns_labels)
            else:
                in_namespace = namespace == "ns1"
            if in_namespace and _selects(peer.get("podSelector", {}), pod_labels):
                return True
    return False


def _policies(settings: OperatorSettings, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    owner, _ = _build(doc or example("k8s-counter.yaml"))
    return {p["metadata"]["name"]: p for p in network_policies(owner, settings)}


def test_the_manifests_exactly() -> None:
    """What the operator applies: every selector and port, nothing more."""
    policies = _policies(CHART_LIKE)
    assert set(policies) == {"counter-hub", "counter-loops"}
    owner = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "name": "counter",
        "uid": "uid-1",
        "controller": True,
    }
    loops = {"podSelector": {"matchLabels": labels("counter", "loop")}}
    scraper = {"namespaceSelector": SCRAPER_NAMESPACES, "podSelector": SCRAPER_PODS}
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ostinato-system"}},
        "podSelector": {"matchLabels": OPERATOR_LABELS},
    }
    assert policies["counter-hub"] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "counter-hub",
            "namespace": "ns1",
            "labels": labels("counter", "hub"),
            "ownerReferences": [owner],
        },
        "spec": {
            "podSelector": {"matchLabels": labels("counter", "hub")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [loops], "ports": [{"protocol": "TCP", "port": 5555}]},
                {
                    "from": [operator, loops, scraper],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                },
            ],
        },
    }
    assert policies["counter-loops"] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "counter-loops",
            "namespace": "ns1",
            "labels": labels("counter", "loop"),
            "ownerReferences": [owner],
        },
        "spec": {
            "podSelector": {"matchLabels": labels("counter", "loop")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [scraper], "ports": [{"protocol": "TCP", "port": 8080}]}],
        },
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_port_admits_whom_it_should_and_nobody_else(path: Any) -> None:
    doc = example(path.name)
    owner, wf = _build(doc)
    policies = _policies(CHART_LIKE, doc)
    hub_policy, loops_policy = policies[f"{owner.name}-hub"], policies[f"{owner.name}-loops"]
    hub_pod = hub_deployment(owner, wf, CHART_LIKE)["spec"]["template"]["metadata"]["labels"]
    our_loops = [p["metadata"]["labels"] for p in loop_pods(owner, wf, CHART_LIKE).values()]
    assert our_loops, "every example has a loop"
    other_loop = labels("other", "loop", "writer", 0)
    prometheus = {"app.kubernetes.io/name": "prometheus"}

    # Each policy selects exactly its pods.
    assert _selects(hub_policy["spec"]["podSelector"], hub_pod)
    assert not any(_selects(hub_policy["spec"]["podSelector"], pod) for pod in our_loops)
    assert all(_selects(loops_policy["spec"]["podSelector"], pod) for pod in our_loops)
    assert not _selects(loops_policy["spec"]["podSelector"], hub_pod)
    assert not _selects(loops_policy["spec"]["podSelector"], other_loop)

    # The hub's ZeroMQ port: this Workflow's loop pods only.
    assert all(_admits(hub_policy, 5555, pod, "ns1") for pod in our_loops)
    for labels_, ns in [
        (other_loop, "ns1"),  # another Workflow's loop, same namespace
        (our_loops[0], "ns2"),  # the same labels in another namespace
        (OPERATOR_LABELS, "ostinato-system"),
        (prometheus, "monitoring"),
        (hub_pod, "ns1"),
    ]:
        assert not _admits(hub_policy, 5555, labels_, ns), (labels_, ns)

    # The hub's HTTP port: the operator, the loops and the scraper.
    assert _admits(hub_policy, 8080, OPERATOR_LABELS, "ostinato-system")
    assert all(_admits(hub_policy, 8080, pod, "ns1") for pod in our_loops)
    assert _admits(hub_policy, 8080, prometheus, "monitoring")
    for labels_, ns in [
        (OPERATOR_LABELS, "ns1"),  # the operator's labels in the wrong namespace
        ({**OPERATOR_LABELS, "app.kubernetes.io/instance": "other"}, "ostinato-system"),
        ({**prometheus, "canary": "yes"}, "monitoring"),
        (prometheus, "ns1"),
        (other_loop, "ns1"),
    ]:
        assert not _admits(hub_policy, 8080, labels_, ns), (labels_, ns)
    assert not _admits(hub_policy, 9090, OPERATOR_LABELS, "ostinato-system")

    # The loop pods' HTTP port: the scraper only; no other port at all.
    assert _admits(loops_policy, 8080, prometheus, "monitoring")
    for labels_, ns in [
        (OPERATOR_LABELS, "ostinato-system"),
        (hub_pod, "ns1"),
        (our_loops[0], "ns1"),
    ]:
        assert not _admits(loops_policy, 8080, labels_, ns), (labels_, ns)
    assert not _admits(loops_policy, 5555, prometheus, "monitoring")


def test_the_ports_are_the_containers_ports() -> None:
    owner, wf = _build(example("k8s-counter.yaml"))
    hub = hub_deployment(owner, wf, CHART_LIKE)["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in hub["ports"]}
    rules = _policies(CHART_LIKE)["counter-hub"]["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in rules] == [ports["zmq"], ports["http"]]
    loop = next(iter(loop_pods(owner, wf, CHART_LIKE).values()))["spec"]["containers"][0]
    (loop_port,) = loop["ports"]
    (rule,) = _policies(CHART_LIKE)["counter-loops"]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": loop_port["containerPort"]}]


def test_without_a_scraper_the_loops_admit_nobody_and_the_hub_no_scraper() -> None:
    settings = OperatorSettings(
        network_policy_operator_namespace="ostinato-system",
        network_policy_operator_pod_labels=OPERATOR_LABELS,
    )
    assert not settings.metrics_scraper
    policies = _policies(settings)
    assert policies["counter-loops"]["spec"]["ingress"] == []
    http = policies["counter-hub"]["spec"]["ingress"][1]["from"]
    assert [sorted(peer) for peer in http] == [
        ["namespaceSelector", "podSelector"],
        ["podSelector"],
    ]
    assert not _admits(policies["counter-hub"], 8080, {"app.kubernetes.io/name": "x"}, "any")


@pytest.mark.parametrize(
    ("namespaces", "pods", "admitted", "refused"),
    [
        # Only a pod selector: those pods in every namespace.
        ({}, {"matchLabels": {"app": "prom"}}, [({"app": "prom"}, "team-x")], [({}, "team-x")]),
        # Only a namespace selector: every pod of those namespaces.
        (
            {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            {},
            [({"any": "pod"}, "monitoring")],
            [({"any": "pod"}, "ns1")],
        ),
    ],
)
def test_one_scraper_selector_alone_leaves_the_other_side_open(
    namespaces: dict[str, Any],
    pods: dict[str, Any],
    admitted: list[tuple[dict[str, str], str]],
    refused: list[tuple[dict[str, str], str]],
) -> None:
    settings = OperatorSettings(
        network_policy_metrics_scraper_namespace_selector=namespaces,
        network_policy_metrics_scraper_pod_selector=pods,
    )
    loops_policy = _policies(settings)["counter-loops"]
    (rule,) = loops_policy["spec"]["ingress"]
    # Never a peer without namespaceSelector: that would mean "the Workflow's own namespace".
    assert rule["from"] == [{"namespaceSelector": namespaces, "podSelector": pods}]
    for pod, ns in admitted:
        assert _admits(loops_policy, 8080, pod, ns)
    for pod, ns in refused:
        assert not _admits(loops_policy, 8080, pod, ns)


def test_an_operator_of_unknown_namespace_is_not_admitted() -> None:
    """Outside a pod the operator has no namespace to name: no peer for it, and nothing that
    admits every namespace in its place."""
    hub = _policies(OperatorSettings())["counter-hub"]
    http = hub["spec"]["ingress"][1]["from"]
    assert http == [{"podSelector": {"matchLabels": labels("counter", "loop")}}]


def test_an_operator_without_labels_is_every_pod_of_its_namespace() -> None:
    settings = OperatorSettings(network_policy_operator_namespace="ops")
    hub = _policies(settings)["counter-hub"]
    assert hub["spec"]["ingress"][1]["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
        "podSelector": {},
    }
    assert _admits(hub, 8080, {"whatever": "pod"}, "ops")
    assert not _admits(hub, 8080, {"whatever": "pod"}, "other")


def test_turned_off_there_are_none() -> None:
    assert _policies(CHART_LIKE.model_copy(update={"network_policy": False})) == {}
