"""Owner references for what the operator creates outside Helm, so `helm uninstall` removes it.

The Lease (_leader.py) and the webhook configurations kopf registers are created at run time,
so Helm does not know them. Each gets an owner from the release - the Lease the operator's
Deployment, the cluster-scoped webhook configurations the release's webhook ClusterRole - and
Kubernetes' garbage collector deletes them when Helm deletes their owner. A rolling restart
keeps both owners, so it keeps both objects.
"""

from __future__ import annotations

import logging
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

__all__ = [
    "OwnerReference",
    "cluster_role_owner",
    "deployment_owner",
    "own_webhook_configs",
    "owner_dicts",
    "with_owner",
]

log = logging.getLogger("ostinato.operator.owners")

#: An ownerReferences entry as the API takes it (no blockOwnerDeletion: that needs more RBAC).
OwnerReference = dict[str, str]


def _reference(api_version: str, kind: str, obj: Any) -> OwnerReference:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj.metadata.name,
        "uid": obj.metadata.uid,
    }


def _unavailable(what: str, exc: Exception) -> None:
    reason = getattr(exc, "reason", None) or exc
    log.warning("cannot read %s (%s): it will not be removed by helm uninstall", what, reason)


def deployment_owner(
    api: kubernetes.client.ApiClient, name: str, namespace: str, timeout_seconds: float
) -> OwnerReference | None:
    """The Deployment ``namespace/name`` as an owner; None (logged) when it cannot be read."""
    try:
        obj = kubernetes.client.AppsV1Api(api).read_namespaced_deployment(
            name, namespace, _request_timeout=timeout_seconds
        )
    except (ApiException, OSError) as exc:
        _unavailable(f"deployment {namespace}/{name}", exc)
        return None
    return _reference("apps/v1", "Deployment", obj)


def cluster_role_owner(
    api: kubernetes.client.ApiClient, name: str, timeout_seconds: float
) -> OwnerReference | None:
    """The ClusterRole ``name`` as an owner; None (logged) when it cannot be read."""
    try:
        obj = kubernetes.client.RbacAuthorizationV1Api(api).read_cluster_role(
            name, _request_timeout=timeout_seconds
        )
    except (ApiException, OSError) as exc:
        _unavailable(f"clusterrole {name}", exc)
        return None
    return _reference("rbac.authorization.k8s.io/v1", "ClusterRole", obj)


def owner_dicts(current: list[Any] | None) -> list[dict[str, Any]]:
    """ownerReferences as read by the client (V1OwnerReference), as the API spells them."""
    return [r if isinstance(r, dict) else _as_dict(r) for r in current or []]


def _as_dict(ref: Any) -> dict[str, Any]:
    out = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid}
    if ref.controller is not None:
        out["controller"] = ref.controller
    if ref.block_owner_deletion is not None:
        out["blockOwnerDeletion"] = ref.block_owner_deletion
    return out


def with_owner(current: list[Any] | None, owner: OwnerReference) -> list[dict[str, Any]] | None:
    """``current`` ownerReferences plus ``owner``; None when ``owner`` is among them already.

    Added, not replaced: an object two releases share keeps both owners and lives while
    either does.
    """
    refs = owner_dicts(current)
    if any(r.get("uid") == owner["uid"] for r in refs):
        return None
    return [*refs, owner]


def own_webhook_configs(
    api: kubernetes.client.ApiClient, name: str, owner: OwnerReference, timeout_seconds: float
) -> None:
    """Create the validating and mutating configurations ``name`` (kopf's managed mode makes
    both, then patches in its webhooks) owned by ``owner``, or add ``owner`` to existing ones."""
    admission: Any = kubernetes.client.AdmissionregistrationV1Api(api)
    kinds = (
        (
            "validatingwebhookconfiguration",
            admission.create_validating_webhook_configuration,
            admission.read_validating_webhook_configuration,
            admission.patch_validating_webhook_configuration,
        ),
        (
            "mutatingwebhookconfiguration",
            admission.create_mutating_webhook_configuration,
            admission.read_mutating_webhook_configuration,
            admission.patch_mutating_webhook_configuration,
        ),
    )
    for kind, create, read, patch in kinds:
        body = {"metadata": {"name": name, "ownerReferences": [owner]}}
        try:
            create(body, _request_timeout=timeout_seconds)
            continue
        except ApiException as exc:
            if exc.status != 409:
                _unavailable(f"{kind} {name}", exc)
                continue
        try:
            found: Any = read(name, _request_timeout=timeout_seconds)
            refs = with_owner(found.metadata.owner_references, owner)
            if refs is not None:
                body = {"metadata": {"ownerReferences": refs}}
                patch(name, body, _request_timeout=timeout_seconds)
        except (ApiException, OSError) as exc:
            _unavailable(f"{kind} {name}", exc)
