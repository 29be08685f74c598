"""The few Kubernetes API calls the operator makes: apply, create, list, delete, status, events."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ._crd import GROUP, KIND, PLURAL, VERSION

__all__ = ["MANAGER", "ApiException", "Kube", "now_rfc3339"]

log = logging.getLogger("ostinato.operator.kube")

MANAGER = "ostinato-operator"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Typed entry points over the kubernetes client; every write names the field manager."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        # The client's generated types want model objects; we pass plain manifests (dicts),
        # which it accepts at run time, so its APIs are used untyped.
        self.api: Any = api
        self.core: Any = kubernetes.client.CoreV1Api(api)
        self.apps: Any = kubernetes.client.AppsV1Api(api)
        self.custom: Any = kubernetes.client.CustomObjectsApi(api)
        self.networking: Any = kubernetes.client.NetworkingV1Api(api)
        self.instance = socket.gethostname()

    @classmethod
    def connect(cls) -> Kube:
        """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
        config = kubernetes.client.Configuration()
        loader: Any = kubernetes.config
        if "KUBERNETES_SERVICE_HOST" in os.environ and "KUBECONFIG" not in os.environ:
            loader.load_incluster_config(client_configuration=config)
        else:
            # $KUBECONFIG read now: the client reads it only once, when first imported.
            loader.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None, client_configuration=config
            )
        return cls(kubernetes.client.ApiClient(config))

    def close(self) -> None:
        self.api.close()

    # -- children --------------------------------------------------------------------------------

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: creates or updates, idempotent, fields we stop setting are removed."""
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        ns = manifest["metadata"]["namespace"]
        kw: dict[str, Any] = {"field_manager": MANAGER, "force": True, "_content_type": _APPLY}
        body = dict(manifest)
        if kind == "ConfigMap":
            out = self.core.patch_namespaced_config_map(name, ns, body, **kw)
        elif kind == "Service":
            out = self.core.patch_namespaced_service(name, ns, body, **kw)
        elif kind == "Deployment":
            out = self.apps.patch_namespaced_deployment(name, ns, body, **kw)
        elif kind == "NetworkPolicy":
            out = self.networking.patch_namespaced_network_policy(name, ns, body, **kw)
        else:
            raise ValueError(f"apply: unsupported kind {kind}")
        result: dict[str, Any] = self.api.sanitize_for_serialization(out)
        return result

    def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create if absent (Secret, PVC, Pod: objects never updated in place); True if created."""
        kind = manifest["kind"]
        ns = manifest["metadata"]["namespace"]
        body = dict(manifest)
        try:
            if kind == "Secret":
                self.core.create_namespaced_secret(ns, body, field_manager=MANAGER)
            elif kind == "PersistentVolumeClaim":
                self.core.create_namespaced_persistent_volume_claim(ns, body, field_manager=MANAGER)
            elif kind == "Pod":
                # The created pod is not read: no model object made of the answer.
                answer = self.core.create_namespaced_pod(
                    ns, body, field_manager=MANAGER, _preload_content=False
                )
                answer.drain_conn()
                answer.release_conn()
            else:
                raise ValueError(f"create: unsupported kind {kind}")
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def secret_value(self, namespace: str, name: str, key: str) -> tuple[str | None, str] | None:
        """One value of a Secret (None when it lacks the key) and the Secret's resourceVersion;
        None when there is no such Secret. The value is a secret: never log it."""
        try:
            raw = self.core.read_namespaced_secret(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        try:
            doc = json.loads(raw.data)
        finally:
            raw.release_conn()
        encoded = (doc.get("data") or {}).get(key)
        try:
            value = None if encoded is None else base64.b64decode(encoded).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            value = None  # not a value we could have written: as if absent
        return value, doc["metadata"]["resourceVersion"]

    def add_to_secret(
        self, namespace: str, name: str, string_data: Mapping[str, str], resource_version: str
    ) -> bool:
        """Add keys to a Secret, only if it is still at ``resource_version`` (so two writers
        never both add theirs); False when it changed or is gone meanwhile."""
        body = {"metadata": {"resourceVersion": resource_version}, "stringData": dict(string_data)}
        try:
            self.core.patch_namespaced_secret(
                name, namespace, body, field_manager=MANAGER, _content_type=_MERGE
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def _pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods' metadata (without managedFields) and status, nothing else.

        Parsed from the raw JSON, not into the client's model objects: at a Workflow's
        1000 pods the models (and their conversion back to dicts) cost the operator ~100 MiB
        more at every status round; what status and reconcile read fits in a tenth of that.
        """
        raw = self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
        try:
            items = json.loads(raw.data)["items"]
        finally:
            raw.release_conn()
        pods = []
        for item in items:
            meta = item.get("metadata") or {}
            meta.pop("managedFields", None)
            pods.append({"metadata": meta, "status": item.get("status") or {}})
        return pods

    def loop_pods(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        return self._pods(
            namespace, f"ostinato.dev/workflow={workflow},app.kubernetes.io/component=loop"
        )

    def workflow_pods(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        """The hub's pods and the loop pods: status reads both for their failures."""
        return self._pods(
            namespace, f"ostinato.dev/workflow={workflow},app.kubernetes.io/component in (hub,loop)"
        )

    def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: dict[str, Any] = self.api.sanitize_for_serialization(pvc)
        return result

    def network_policies(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        """The NetworkPolicies the operator made for the Workflow: their metadata only."""
        selector = f"ostinato.dev/workflow={workflow},app.kubernetes.io/managed-by={MANAGER}"
        raw = self.networking.list_namespaced_network_policy(
            namespace, label_selector=selector, _preload_content=False
        )
        try:
            items = json.loads(raw.data)["items"]
        finally:
            raw.release_conn()
        return [{"metadata": item.get("metadata") or {}} for item in items]

    def delete_network_policy(self, namespace: str, name: str, uid: str) -> bool:
        """Delete that incarnation of a NetworkPolicy; False if it is gone already."""
        body = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid)
        )
        try:
            self.networking.delete_namespaced_network_policy(name, namespace, body=body)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a pod (only that incarnation when ``uid`` is given); False if already gone."""
        body = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid) if uid else None
        )
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    # -- the Workflow ----------------------------------------------------------------------------

    def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: dict[str, Any] = obj
        return result

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch .status (a None value removes that field)."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
            _content_type=_MERGE,
        )

    def event(
        self, owner: Mapping[str, Any], reason: str, message: str, warning: bool = False
    ) -> None:
        """A core/v1 Event on the Workflow; never raises (events are best effort)."""
        meta = owner["metadata"]
        now = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:
            log.warning("cannot post event %s on %s: %s", reason, meta["name"], exc.reason)
