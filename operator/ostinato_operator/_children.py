"""Pure builders: a Workflow in, the manifests of every child object out (no API calls here)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ostinato import DesiredState, Workflow
from ostinato.lowlevel import LoopSpec

from ._autoscaling import replica_count
from ._crd import GROUP, KIND, VERSION
from ._keys import HUB_ENV_VARS, LOOP_ENV_VARS
from ._settings import OperatorSettings

__all__ = [
    "HASH_ANNOTATION",
    "HTTP_PORT",
    "ZMQ_PORT",
    "Owner",
    "config_map",
    "effective_state",
    "hub_deployment",
    "hub_pvc",
    "hub_service",
    "labels",
    "loop_pods",
    "needs_state_volume",
    "network_policies",
    "pod_finished",
    "secret",
]

HASH_ANNOTATION = "ostinato.dev/spec-hash"
ZMQ_PORT = 5555
HTTP_PORT = 8080
UID = 10001
SPEC_DIR = "/etc/ostinato/workflow"
SPEC_FILE = f"{SPEC_DIR}/workflow.yaml"
STATE_DIR = "/var/lib/ostinato"
MANAGER = "ostinato-operator"
#: A container that exits with an error gets the tail of its log as its termination message
#: (lastState.terminated.message): the operator shows a crash loop's cause without reading logs.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
#: Where a loop writes its final state ('finished: ...', 'stopped: ...'); the kubelet puts it in
#: the container's terminated.message (the default terminationMessagePath).
TERMINATION_LOG = "/dev/termination-log"
#: The start of that message for a loop that ended by itself: only such a Succeeded pod is kept.
FINISHED_MESSAGE = "finished:"


@dataclass(frozen=True, slots=True)
class Owner:
    """The Workflow object the children belong to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"])

    @property
    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }

    @property
    def hub(self) -> str:
        return f"{self.name}-hub"


def labels(
    workflow: str, component: str, loop: str | None = None, replica: int | None = None
) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "ostinato",
        "app.kubernetes.io/instance": workflow,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": workflow,
        "ostinato.dev/workflow": workflow,
    }
    if loop is not None:
        out["ostinato.dev/loop"] = loop
    if replica is not None:
        out["ostinato.dev/replica"] = str(replica)
    return out


def _meta(owner: Owner, name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, component),
        "ownerReferences": [owner.reference],
        **extra,
    }


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def effective_state(workflow: Workflow, loop: LoopSpec) -> DesiredState:
    return DesiredState.combine(workflow.spec.state, loop.state)


def needs_state_volume(workflow: Workflow) -> bool:
    return any(q.durable for q in workflow.spec.queues)


def spec_document(workflow: Workflow, namespace: str) -> str:
    """The normalized workflow file the hub and the loops read (server metadata left out)."""
    doc = workflow.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc.pop("status", None)
    doc["metadata"] = {"name": workflow.metadata.name, "namespace": namespace}
    return yaml.safe_dump(doc, sort_keys=False)


def config_map(owner: Owner, workflow: Workflow) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, f"{owner.name}-spec", "config"),
        "data": {"workflow.yaml": spec_document(workflow, owner.namespace)},
    }


def secret(owner: Owner, string_data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(owner, f"{owner.name}-curve", "curve-keys"),
        "stringData": dict(string_data),
    }


def _image(workflow: Workflow, settings: OperatorSettings, loop: LoopSpec | None = None) -> str:
    if loop is not None and loop.image:
        return loop.image
    return workflow.spec.image or settings.image


def _env(owner: Owner, variables: tuple[str, ...]) -> list[dict[str, Any]]:
    ref = f"{owner.name}-curve"
    return [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": ref, "key": var}}} for var in variables
    ]


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _probes() -> dict[str, Any]:
    def get(path: str) -> dict[str, Any]:
        return {"path": path, "port": "http"}

    return {
        "livenessProbe": {
            "httpGet": get("/healthz"),
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": get("/readyz"),
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
    }


def _scrape_annotations() -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }


def _volumes(owner: Owner) -> list[dict[str, Any]]:
    return [
        {"name": "workflow", "configMap": {"name": f"{owner.name}-spec"}},
        {"name": "tmp", "emptyDir": {}},
    ]


def _mounts() -> list[dict[str, Any]]:
    return [
        {"name": "workflow", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def hub_deployment(owner: Owner, workflow: Workflow, settings: OperatorSettings) -> dict[str, Any]:
    durable = needs_state_volume(workflow)
    state_volume: dict[str, Any] = (
        {"name": "state", "persistentVolumeClaim": {"claimName": f"{owner.hub}-state"}}
        if durable
        else {"name": "state", "emptyDir": {}}
    )
    container = {
        "name": "hub",
        "image": _image(workflow, settings),
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "hub",
            SPEC_FILE,
            "--bind",
            f"tcp://0.0.0.0:{ZMQ_PORT}",
            "--http-port",
            str(HTTP_PORT),
            "--state-dir",
            STATE_DIR,
            # The web console (kubectl port-forward svc/NAME-hub 8080): read-only, since the
            # operator owns the desired states; it shows the kubectl patch that changes them.
            "--ui",
            "--ui-managed-by-operator",
        ],
        "ports": [
            {"name": "zmq", "containerPort": ZMQ_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        "env": _env(owner, HUB_ENV_VARS),
        **_probes(),
        "securityContext": _container_security(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        "volumeMounts": [*_mounts(), {"name": "state", "mountPath": STATE_DIR}],
    }
    # What the hub reads of the spec: queues and loop names. A change to one loop's nodes,
    # image, resources or replicas must not restart the hub (its queues, every connection):
    # the hub learns a loop's replicas from those that report to it.
    hub_view = {
        "queues": [q.model_dump(mode="json") for q in workflow.spec.queues],
        "loops": [lp.name for lp in workflow.spec.loops],
        "image": container["image"],
        "durable": durable,
    }
    pod_labels = labels(owner.name, "hub")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, owner.hub, "hub"),
        "spec": {
            "replicas": 1,
            # One hub at a time: it owns the durable queue's SQLite file on a RWO volume.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        **_scrape_annotations(),
                        HASH_ANNOTATION: _hash(hub_view),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [*_volumes(owner), state_volume],
                },
            },
        },
    }


def hub_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, owner.hub, "hub"),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(owner.name, "hub"),
            "ports": [
                {"name": "zmq", "port": ZMQ_PORT, "targetPort": "zmq", "protocol": "TCP"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def hub_pvc(owner: Owner, workflow: Workflow, settings: OperatorSettings) -> dict[str, Any] | None:
    """The hub's state volume, only when a queue is durable."""
    if not needs_state_volume(workflow):
        return None
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.state_volume_size}},
    }
    if settings.state_storage_class is not None:
        spec["storageClassName"] = settings.state_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(owner, f"{owner.hub}-state", "hub"),
        "spec": spec,
    }


def loop_pod(
    owner: Owner, workflow: Workflow, loop: LoopSpec, replica: int, settings: OperatorSettings
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if loop.resources is not None:
        resources = {
            key: dict(value)
            for key, value in (
                ("requests", loop.resources.requests),
                ("limits", loop.resources.limits),
            )
            if value
        }
    container: dict[str, Any] = {
        "name": "loop",
        "image": _image(workflow, settings, loop),
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "loop",
            SPEC_FILE,
            "--loop",
            loop.name,
            "--replica",
            str(replica),
            "--hub",
            f"tcp://{owner.hub}.{owner.namespace}.svc:{ZMQ_PORT}",
            "--http-port",
            str(HTTP_PORT),
            "--final-state-file",
            TERMINATION_LOG,
        ],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(owner, LOOP_ENV_VARS),
        "resources": resources,
        **_probes(),
        "securityContext": _container_security(),
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        "volumeMounts": _mounts(),
    }
    spec = {
        # A loop process exits 0 only when it ended for good (finished, or stopped as asked):
        # the pod then stays Succeeded instead of running the loop, and sending its data, again.
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": math.ceil(loop.drain_timeout_seconds)
        + settings.termination_margin_seconds,
        "containers": [container],
        "volumes": _volumes(owner),
    }
    pod_labels = labels(owner.name, "loop", loop.name, replica)
    annotations = _scrape_annotations()
    # Everything the pod is made of and everything its process reads of the workflow file: its
    # loop and the queues that loop uses. Not spec.state: a pause or resume replaces nothing;
    # not replicas nor autoscale: scaling adds or removes pods and leaves the others alone.
    refs = [n.queue for n in (loop.producer, *loop.nodes) if n is not None and n.queue]
    used = {name for ref in refs if ref is not None for name in (ref.read, ref.write) if name}
    view = {
        "labels": pod_labels,
        "spec": spec,
        "loop": loop.model_dump(mode="json", exclude={"state", "replicas", "autoscale"}),
        "queues": [q.model_dump(mode="json") for q in workflow.spec.queues if q.name in used],
    }
    annotations[HASH_ANNOTATION] = _hash(view)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{owner.name}-{loop.name}-{replica}",
            "namespace": owner.namespace,
            "labels": pod_labels,
            "annotations": annotations,
            "ownerReferences": [owner.reference],
        },
        "spec": spec,
    }


def pod_finished(pod: Mapping[str, Any]) -> bool:
    """A loop pod that Succeeded because its loop ended by itself (its final state, written to
    the termination log, says 'finished:'); one that stopped when asked is not an ending."""
    status = pod.get("status") or {}
    if status.get("phase") != "Succeeded":
        return False
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if str(terminated.get("message") or "").startswith(FINISHED_MESSAGE):
            return True
    return False


def loop_pods(
    owner: Owner,
    workflow: Workflow,
    settings: OperatorSettings,
    scaled: Mapping[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Pod name -> manifest for every replica of every loop that is not stopped; an autoscaled
    loop has as many as ``scaled`` says (the last decision), its minReplicas without one."""
    pods: dict[str, dict[str, Any]] = {}
    for loop in workflow.spec.loops:
        if effective_state(workflow, loop) is DesiredState.STOPPED:
            continue
        for replica in range(replica_count(loop, scaled or {})):
            pod = loop_pod(owner, workflow, loop, replica, settings)
            pods[pod["metadata"]["name"]] = pod
    return pods


#: Every namespace carries its own name as this label (set by Kubernetes 1.21 and later).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def _match(match_labels: Mapping[str, str]) -> dict[str, Any]:
    """A label selector of these labels; {} (every pod) without any, as the API stores it."""
    return {"matchLabels": dict(match_labels)} if match_labels else {}


def _network_policy(
    owner: Owner, name: str, component: str, ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(owner, name, component),
        "spec": {
            "podSelector": _match(labels(owner.name, component)),
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def network_policies(owner: Owner, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The Workflow's NetworkPolicies (ingress only; egress stays open), none when turned off.

    ``<wf>-hub``: the hub pod admits the Workflow's own loop pods on the ZeroMQ port and, on the
    HTTP port (/status, /metrics, POST /control), the operator's pods, those loop pods and the
    metrics scraper. ``<wf>-loops``: the loop pods admit the metrics scraper on their HTTP port
    (/metrics, /status) and nobody else: they only connect out, to the hub. The kubelet's probes
    come from the node, which NetworkPolicy implementations always admit.
    """
    if not settings.network_policy:
        return []
    loops = {"podSelector": _match(labels(owner.name, "loop"))}
    # An empty selector is "every": namespaces or pods. Both empty admit no scraper at all.
    scraper_namespaces = settings.network_policy_metrics_scraper_namespace_selector
    scraper_pods = settings.network_policy_metrics_scraper_pod_selector
    scraper = (
        [
            {
                "namespaceSelector": scraper_namespaces.manifest(),
                "podSelector": scraper_pods.manifest(),
            }
        ]
        if settings.metrics_scraper
        else []
    )
    operator: list[dict[str, Any]] = []
    if settings.network_policy_operator_namespace is not None:
        namespace = {NAMESPACE_NAME_LABEL: settings.network_policy_operator_namespace}
        operator.append(
            {
                "namespaceSelector": _match(namespace),
                "podSelector": _match(settings.network_policy_operator_pod_labels),
            }
        )
    hub = [
        {"from": [loops], "ports": [_tcp(ZMQ_PORT)]},
        {"from": [*operator, loops, *scraper], "ports": [_tcp(HTTP_PORT)]},
    ]
    return [
        _network_policy(owner, owner.hub, "hub", hub),
        _network_policy(
            owner,
            f"{owner.name}-loops",
            "loop",
            [{"from": scraper, "ports": [_tcp(HTTP_PORT)]}] if scraper else [],
        ),
    ]
