"""The control plane behaves like a real one: CRD schemas, status subresource, GC and RBAC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import (
    CoreV1Api,
    CustomObjectsApi,
    RbacAuthorizationV1Api,
    RbacV1Subject,
    V1ConfigMap,
    V1ObjectMeta,
    V1OwnerReference,
    V1PolicyRule,
    V1Role,
    V1RoleBinding,
    V1RoleRef,
    V1ServiceAccount,
)
from kubernetes.client.exceptions import ApiException

from hack.k8s._util import wait_until
from hack.k8s.controlplane import CommandError, ControlPlane

GROUP, VERSION, PLURAL = "infra.ostinato.dev", "v1", "widgets"
CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {PLURAL}.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{kind: Widget, plural: {PLURAL}, singular: widget, listKind: WidgetList}}
  versions:
    - name: {VERSION}
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {{type: integer, minimum: 1}}
            status:
              type: object
              properties:
                seen: {{type: integer}}
"""


def _widget(namespace: str, name: str, size: Any) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"size": size},
        }
    )


@pytest.fixture(scope="module")
def widget_crd(control_plane: ControlPlane) -> Iterator[str]:
    control_plane.kubectl("apply", "-f", "-", input=CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", f"crd/{PLURAL}.{GROUP}"
    )
    yield f"{PLURAL}.{GROUP}"
    control_plane.kubectl("delete", f"crd/{PLURAL}.{GROUP}", "--wait=false")


@pytest.mark.usefixtures("widget_crd")
def test_crd_schema_rejects_invalid_objects(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", "-", input=_widget(k8s_namespace, "good", 3))
    with pytest.raises(CommandError) as wrong_type:
        control_plane.kubectl("apply", "-f", "-", input=_widget(k8s_namespace, "bad", "many"))
    assert "spec.size" in wrong_type.value.stderr
    with pytest.raises(CommandError) as too_small:
        control_plane.kubectl("apply", "-f", "-", input=_widget(k8s_namespace, "small", 0))
    assert "spec.size" in too_small.value.stderr
    names = control_plane.kubectl(
        "get", PLURAL, "-n", k8s_namespace, "-o", "jsonpath={.items[*].metadata.name}"
    ).stdout.split()
    assert names == ["good"]


@pytest.mark.usefixtures("widget_crd")
def test_status_subresource_keeps_generation(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    with control_plane.api_client() as client:
        api = CustomObjectsApi(client)
        args = (GROUP, VERSION, k8s_namespace, PLURAL, "w")
        body = json.loads(_widget(k8s_namespace, "w", 1))
        created: Any = api.create_namespaced_custom_object(
            GROUP, VERSION, k8s_namespace, PLURAL, body
        )
        assert created["metadata"]["generation"] == 1

        changed: Any = api.patch_namespaced_custom_object(*args, {"spec": {"size": 2}})
        assert changed["metadata"]["generation"] == 2

        status: Any = api.patch_namespaced_custom_object_status(*args, {"status": {"seen": 2}})
        assert status["status"] == {"seen": 2}
        assert status["metadata"]["generation"] == 2

        # Through the main resource, status is not writable at all.
        ignored: Any = api.patch_namespaced_custom_object(*args, {"status": {"seen": 99}})
        assert ignored["status"] == {"seen": 2}
        assert ignored["metadata"]["generation"] == 2


@pytest.mark.timeout(90)
def test_deleting_owner_collects_children(control_plane: ControlPlane, k8s_namespace: str) -> None:
    if not control_plane.with_controller_manager:
        pytest.skip("garbage collection needs kube-controller-manager, unavailable here")
    with control_plane.api_client() as client:
        core = CoreV1Api(client)
        owner: Any = core.create_namespaced_config_map(
            k8s_namespace, V1ConfigMap(metadata=V1ObjectMeta(name="owner"))
        )
        reference = V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
        for index in range(3):
            core.create_namespaced_config_map(
                k8s_namespace,
                V1ConfigMap(
                    metadata=V1ObjectMeta(name=f"child-{index}", owner_references=[reference])
                ),
            )
        core.create_namespaced_config_map(
            k8s_namespace, V1ConfigMap(metadata=V1ObjectMeta(name="bystander"))
        )

        def names() -> set[str]:
            items: list[Any] = core.list_namespaced_config_map(k8s_namespace).items
            return {str(item.metadata.name) for item in items} - {"kube-root-ca.crt"}

        assert names() == {"owner", "child-0", "child-1", "child-2", "bystander"}
        core.delete_namespaced_config_map("owner", k8s_namespace)
        remaining = wait_until(
            lambda: names() if names() == {"bystander"} else None,
            timeout=60,
            what="garbage collection of child-0..2",
            interval=0.2,
        )
        assert remaining == {"bystander"}


@pytest.mark.timeout(90)
def test_service_account_without_role_is_forbidden(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    with control_plane.api_client() as admin:
        CoreV1Api(admin).create_namespaced_service_account(
            k8s_namespace, V1ServiceAccount(metadata=V1ObjectMeta(name="nobody"))
        )
    kubeconfig = control_plane.kubeconfig_for_service_account(k8s_namespace, "nobody")

    denied = control_plane.kubectl(
        "get", "configmaps", "-n", k8s_namespace, kubeconfig=kubeconfig, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f"system:serviceaccount:{k8s_namespace}:nobody" in denied.stderr
    with control_plane.api_client(kubeconfig) as client:
        with pytest.raises(ApiException) as raised:
            CoreV1Api(client).list_namespaced_config_map(k8s_namespace)
        assert raised.value.status == 403

    # The same token works once a Role allows it: the 403 was RBAC, not a bad token.
    with control_plane.api_client() as admin:
        rbac = RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role(
            k8s_namespace,
            V1Role(
                metadata=V1ObjectMeta(name="read-configmaps"),
                rules=[V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
            ),
        )
        subject = RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=k8s_namespace)
        rbac.create_namespaced_role_binding(
            k8s_namespace,
            V1RoleBinding(
                metadata=V1ObjectMeta(name="nobody-reads"),
                role_ref=V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
                ),
                subjects=[subject],
            ),
        )

    def allowed() -> bool | None:
        result = control_plane.kubectl(
            "get", "configmaps", "-n", k8s_namespace, kubeconfig=kubeconfig, check=False
        )
        return True if result.returncode == 0 else None

    assert wait_until(allowed, timeout=30, what="RBAC grant to take effect", interval=0.2)
    still_denied = control_plane.kubectl(
        "get", "secrets", "-n", k8s_namespace, kubeconfig=kubeconfig, check=False
    )
    assert "forbidden" in still_denied.stderr.lower()
