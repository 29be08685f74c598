"""What the operator creates outside Helm goes with the release: on the real control plane (with
its garbage collector) the Lease is owned by a Deployment and the webhook configurations by a
ClusterRole, and deleting the owner - what `helm uninstall` does - deletes them. A renewal never
brings back a Lease deleted under its holder."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import (
    AdmissionregistrationV1Api,
    AppsV1Api,
    CoordinationV1Api,
    RbacAuthorizationV1Api,
)
from kubernetes.client.exceptions import ApiException

from hack.k8s._util import wait_until
from hack.k8s.controlplane import ControlPlane
from ostinato_operator._leader import LeaseHolder
from ostinato_operator._owners import cluster_role_owner, deployment_owner, own_webhook_configs

pytestmark = pytest.mark.timeout(180)

#: The garbage collector works in the background: seconds on a loaded machine, not minutes.
GC_SECONDS = 90


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[Any]:
    if not control_plane.with_controller_manager:
        pytest.skip("no kube-controller-manager binary: no garbage collector to test with")
    with control_plane.api_client() as client:
        yield client


def _gone(read: Any, *args: str) -> bool | None:
    try:
        read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return None


def _deployment(api: Any, namespace: str, name: str) -> None:
    labels = {"app": name}
    body = {
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,  # only an owner: nothing needs to run
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "localhost/none:0"}]},
            },
        },
    }
    AppsV1Api(api).create_namespaced_deployment(namespace, body)


def test_the_lease_goes_with_its_deployment(api: Any, namespace: str) -> None:
    _deployment(api, namespace, "operator")
    owner = deployment_owner(api, "operator", namespace, 5.0)
    assert owner is not None
    assert owner["kind"] == "Deployment"
    holder = LeaseHolder(api, "operator", namespace, 15, 5.0, owner=owner)
    assert holder.try_acquire()
    leases = CoordinationV1Api(api)
    refs = leases.read_namespaced_lease("operator", namespace).metadata.owner_references
    assert [(r.kind, r.name, r.uid) for r in refs] == [("Deployment", "operator", owner["uid"])]
    # A renewal (a replace) keeps the owner: a replace without it would drop it.
    assert holder.try_acquire(create=False)
    refs = leases.read_namespaced_lease("operator", namespace).metadata.owner_references
    assert [r.uid for r in refs] == [owner["uid"]]
    assert holder.release()
    AppsV1Api(api).delete_namespaced_deployment("operator", namespace)
    wait_until(
        lambda: _gone(leases.read_namespaced_lease, "operator", namespace),
        timeout=GC_SECONDS,
        what="the garbage collector deleting the Lease with its Deployment",
    )


def test_a_renewal_does_not_bring_back_a_deleted_lease(api: Any, namespace: str) -> None:
    holder = LeaseHolder(api, "operator", namespace, 15, 0.2)
    assert holder.try_acquire()
    lost = threading.Event()
    holder.keep(lost.set)
    leases = CoordinationV1Api(api)
    leases.delete_namespaced_lease("operator", namespace)
    assert lost.wait(60), "the holder went on as if it still held the Lease"
    assert _gone(leases.read_namespaced_lease, "operator", namespace)


def test_the_webhook_configurations_go_with_their_cluster_role(api: Any) -> None:
    suffix = secrets.token_hex(4)
    role, config = f"owner-{suffix}", f"validate-{suffix}.ostinato.dev"
    rbac = RbacAuthorizationV1Api(api)
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": []})
    admission = AdmissionregistrationV1Api(api)
    # One of the two exists already (an operator of an earlier version made it): it gains the
    # owner; the other is created with it.
    admission.create_validating_webhook_configuration({"metadata": {"name": config}})
    owner = cluster_role_owner(api, role, 5.0)
    assert owner is not None
    assert owner["kind"] == "ClusterRole"
    own_webhook_configs(api, config, owner, 5.0)
    own_webhook_configs(api, config, owner, 5.0)  # again, as at every start: no duplicate
    for read in (
        admission.read_validating_webhook_configuration,
        admission.read_mutating_webhook_configuration,
    ):
        refs = read(config).metadata.owner_references
        assert [(r.kind, r.name, r.uid) for r in refs] == [("ClusterRole", role, owner["uid"])]
    rbac.delete_cluster_role(role)
    for read in (
        admission.read_validating_webhook_configuration,
        admission.read_mutating_webhook_configuration,
    ):
        wait_until(
            lambda read=read: _gone(read, config),  # type: ignore[misc]
            timeout=GC_SECONDS,
            what=f"the garbage collector deleting {config} with its ClusterRole",
        )


def test_an_owner_that_cannot_be_read_is_one_warning_not_a_failure(
    api: Any, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert deployment_owner(api, "no-such-deployment", namespace, 5.0) is None
    assert cluster_role_owner(api, f"no-such-role-{secrets.token_hex(4)}", 5.0) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no-such-deployment" in w and "helm uninstall" in w for w in warnings), warnings
