"""What the running operator (and kopf for it) really made, read back from the API server, is
valid Kubernetes 1.27 and later: the pure builders' check (tests/schemas) misses what is added
on the way (kopf's webhook configurations, the owner patches, the Events as posted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from hack.k8s._util import wait_until
from tests.schemas.support import VERSIONS, check

from .conftest import Installed, Operator, run_operator
from .support import example

pytestmark = pytest.mark.timeout(180)

#: The kinds the operator makes for a Workflow, each labelled with the Workflow's name.
CHILD_KINDS = (
    "configmaps",
    "secrets",
    "deployments",
    "services",
    "persistentvolumeclaims",
    "pods",
    "networkpolicies",
)


COMPONENT = "app.kubernetes.io/component"


@pytest.fixture(scope="module")
def operator(installed: Installed) -> Iterator[Operator]:
    with run_operator(installed) as op:
        yield op


def _items(op: Operator, *args: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(op.kubectl("get", *args, "-o", "json").stdout)["items"]
    return items


def _children(op: Operator, ns: str, name: str) -> list[dict[str, Any]]:
    selector = f"ostinato.dev/workflow={name}"
    return _items(op, ",".join(CHILD_KINDS), "-n", ns, "-l", selector)


def test_every_object_the_operator_made_is_valid_in_every_supported_release(
    operator: Operator, namespace: str
) -> None:
    doc = example("k8s-pipeline.yaml")
    for queue in doc["spec"]["queues"]:
        queue["durable"] = True  # the hub's PersistentVolumeClaim too
    name = doc["metadata"]["name"]
    operator.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

    def made() -> list[dict[str, Any]] | None:
        objects = _children(operator, namespace, name)
        kinds = {o["kind"] for o in objects}
        want = {
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "PersistentVolumeClaim",
            "Pod",
            "NetworkPolicy",
        }
        # The operator's loop pods (a controller-manager may have made the hub's pod as well).
        loops = [o for o in objects if o["metadata"]["labels"].get(COMPONENT) == "loop"]
        pods = sum(o["kind"] == "Pod" for o in loops)
        return objects if kinds >= want and pods == 4 else None  # sensor, dashboard, archive x2

    objects = wait_until(made, timeout=60, what=f"the children of {name}")
    events = wait_until(
        lambda: _items(operator, "events", "-n", namespace) or None,
        timeout=60,
        what="the operator's events",
    )
    hooks = _items(operator, "validatingwebhookconfigurations,mutatingwebhookconfigurations")
    ours = [h for h in hooks if h["metadata"]["name"] == "validate.ostinato.dev"]
    assert ours, "kopf made no webhook configuration"
    crd = json.loads(operator.kubectl("get", "crd", "workflows.ostinato.dev", "-o", "json").stdout)
    everything = [*objects, *events, *ours, crd]
    assert {o["kind"] for o in everything} == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "Pod",
        "NetworkPolicy",
        "Event",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",  # kopf makes an empty one beside it
        "CustomResourceDefinition",
    }
    for version in VERSIONS:
        for obj in everything:
            check(obj, version, f"{obj['kind']} {obj['metadata']['name']}")
