"""The operator's settings: one pydantic model, filled from flags or OSTINATO_* variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ENV_PREFIX", "LabelSelector", "OperatorSettings"]

ENV_PREFIX = "OSTINATO_"


class LabelRequirement(BaseModel):
    """One matchExpressions entry of a Kubernetes label selector."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> LabelRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.key}: operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.key}: operator {self.operator} takes no values")
        return self

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.values:
            out["values"] = list(self.values)
        return out


class LabelSelector(BaseModel):
    """A Kubernetes label selector, spelt as the API spells it (matchLabels, matchExpressions).
    An empty one selects everything, as in Kubernetes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[LabelRequirement, ...] = Field((), alias="matchExpressions")

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def manifest(self) -> dict[str, Any]:
        """The selector as it goes into an object: only the parts that are set."""
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [e.manifest() for e in self.match_expressions]
        return out


class OperatorSettings(BaseModel):
    """Every knob of the operator, with its unit and why the default is what it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = Field(
        (),
        description="Namespaces to watch; empty watches all (cluster-wide), the chart's default.",
    )
    image: str = Field(
        "localhost/ostinato:dev",
        min_length=1,
        description="Image of hubs and of loops whose spec names none. The default is what "
        "`make image-local` builds; the chart sets OSTINATO_IMAGE to its own image.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent",
        description="IfNotPresent: images built into the node's containerd need no registry.",
    )
    status_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="Seconds between two GETs of one hub's /status. 5 s keeps `kubectl get` "
        "fresh enough for people while 100 workflows cost 20 small requests a second.",
    )
    status_refresh_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds after which an unchanged .status is written again, only to move "
        "lastUpdateTime: an older lastUpdateTime (the Updated column of `kubectl get -o wide`) "
        "means no operator keeps the status up to date. One small patch a minute per Workflow.",
    )
    hub_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="Seconds a GET /status or POST /control may take. Well under the status "
        "interval so one slow hub never delays the next round.",
    )
    hub_url_template: str = Field(
        "http://{name}-hub.{namespace}.svc:8080",
        description="The hub's HTTP address; {name} and {namespace} are the Workflow's. "
        "Tests point it at a hub on loopback.",
    )
    termination_margin_seconds: int = Field(
        10,
        ge=0,
        description="Seconds added to a loop's drainTimeoutSeconds for its pod's "
        "terminationGracePeriodSeconds: time to finish the iteration and call teardown.",
    )
    status_max_bytes: int = Field(
        32 * 1024,
        ge=4096,
        description="Largest .status in bytes (JSON). Node details go first when it would be "
        "larger: objects near etcd's 1.5 MiB limit slow every watcher.",
    )
    state_volume_size: str = Field(
        "1Gi",
        description="Size of the hub's PVC when a queue is durable: SQLite in WAL mode holds "
        "1 GiB of pending messages, far more than queue capacities allow by default.",
    )
    state_storage_class: str | None = Field(
        None, description="StorageClass of that PVC; unset uses the cluster's default."
    )
    network_policy: bool = Field(
        True,
        description="Give every Workflow two NetworkPolicies (ingress only): its hub admits "
        "its own loop pods on the ZeroMQ port, and the operator, its loop pods and the metrics "
        "scraper on the HTTP port; its loop pods admit the metrics scraper on theirs. Turned "
        "off, the operator deletes those it made. Only a CNI that implements NetworkPolicy "
        "enforces them.",
    )
    network_policy_operator_namespace: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Namespace of the operator's pods, admitted to every hub's HTTP port (GET "
        "/status, POST /control); the chart sets its own. Unset: the pod's own namespace; "
        "outside a pod there is none and no operator is admitted.",
    )
    network_policy_operator_pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels of the operator's pods in that namespace (a JSON object in the "
        "environment); the chart sets its pods' selector labels. Empty: every pod there.",
    )
    network_policy_metrics_scraper_namespace_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Namespaces of the metrics scraper (e.g. Prometheus) admitted to the HTTP "
        "port of hubs and loop pods, a label selector as Kubernetes spells it (JSON in the "
        "environment). Empty selects every namespace, but when both scraper selectors are "
        "empty no scraper is admitted.",
    )
    network_policy_metrics_scraper_pod_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="The metrics scraper's pods in those namespaces, a label selector (JSON in "
        "the environment). Empty selects every pod of those namespaces.",
    )
    metrics_port: int = Field(9090, ge=0, le=65535, description="Port of /metrics; 0 disables.")
    liveness_port: int = Field(
        8081, ge=0, le=65535, description="Port of kopf's /healthz liveness endpoint; 0 disables."
    )
    webhook: bool = Field(
        False,
        description="Serve the validating admission webhook and register it (kopf-managed "
        "ValidatingWebhookConfiguration). Off by default: it needs a reachable Service.",
    )
    webhook_addr: str = Field(
        "0.0.0.0", description="Address the webhook listens on (all interfaces in a pod)."
    )
    webhook_port: int = Field(9443, ge=1, le=65535, description="Port the webhook listens on.")
    webhook_host: str | None = Field(
        None,
        description="Host name the API server calls the webhook at, e.g. "
        "ostinato-webhook.ostinato-system.svc; put in the self-signed certificate.",
    )
    webhook_config_name: str = Field(
        "validate.ostinato.dev",
        description="Name of the ValidatingWebhookConfiguration kopf creates and patches.",
    )
    webhook_owner_cluster_role: str | None = Field(
        None,
        description="ClusterRole made the owner of the webhook configurations kopf registers, "
        "so deleting it (helm uninstall) deletes them; the chart sets its webhook ClusterRole. "
        "Unset: nothing removes them but `kubectl delete`.",
    )
    leader_election: bool = Field(
        False,
        description="Hold a Lease while running so only one replica acts. Off outside a "
        "cluster (tests, local runs); the CLI turns it on when running in a pod.",
    )
    lease_name: str = Field("ostinato-operator", description="Name of the coordination Lease.")
    lease_namespace: str | None = Field(
        None, description="Namespace of the Lease; unset: the pod's own namespace."
    )
    lease_owner_deployment: str | None = Field(
        None,
        description="Deployment (in the Lease's namespace) made the owner of the Lease, so "
        "deleting it (helm uninstall) deletes the Lease; the chart sets its own Deployment. "
        "Unset: the Lease stays after the operator is gone.",
    )
    lease_duration_seconds: int = Field(
        15,
        ge=5,
        description="A Lease not renewed for this long may be taken over: 15 s, as "
        "kube-controller-manager's default.",
    )
    lease_renew_seconds: float = Field(
        5.0, gt=0, description="How often the holder renews; a third of the duration."
    )
    lease_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a standby reads the Lease while it waits: a released Lease is "
        "taken over at most this many seconds later, for one small GET a second.",
    )
    lease_request_timeout_seconds: float = Field(
        3.0,
        gt=0,
        description="Seconds one read or write of the Lease may take. Bounded so that a hung "
        "renewal cannot outlive the Lease, nor the release at SIGTERM the shutdown timeout.",
    )
    shutdown_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds from SIGTERM (or SIGINT) to the process's exit, at most. The Lease "
        "is released first, so a standby takes over at once; kopf gets the rest to stop its "
        "handlers, then the process exits regardless. A reconcile cut short is redone by the "
        "next replica (reconciles are idempotent). The chart's terminationGracePeriodSeconds "
        "is this plus a margin, so the kubelet never needs SIGKILL.",
    )
    max_pods_per_workflow: int = Field(
        50,
        ge=1,
        le=1000,
        description="Most loop pods one Workflow may have (the replicas of its loops that are "
        "not stopped; the hub's pod is not counted). A Workflow over it is refused at admission "
        "and, with the webhook off, gets a Failed status instead of pods. 50 fits a small "
        "cluster: a typo like replicas: 1000 cannot flood the scheduler or the operator's "
        "memory (one pod is ~10 KiB in its cache).",
    )
    workers: int = Field(
        8,
        ge=1,
        le=256,
        description="Hub /status requests in flight at once; 8 keeps 100 workflows inside one "
        "interval with 2 s timeouts on 2 cores.",
    )

    @field_validator(
        "network_policy_operator_pod_labels",
        "network_policy_metrics_scraper_namespace_selector",
        "network_policy_metrics_scraper_pod_selector",
        mode="before",
    )
    @classmethod
    def _json_from_the_environment(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc})") from None

    @model_validator(mode="after")
    def _consistent(self) -> OperatorSettings:
        if self.lease_renew_seconds >= self.lease_duration_seconds:
            raise ValueError(
                f"lease_renew_seconds ({self.lease_renew_seconds}) must be under "
                f"lease_duration_seconds ({self.lease_duration_seconds})"
            )
        if self.lease_request_timeout_seconds >= self.shutdown_timeout_seconds:
            raise ValueError(
                f"lease_request_timeout_seconds ({self.lease_request_timeout_seconds}) must be "
                f"under shutdown_timeout_seconds ({self.shutdown_timeout_seconds}): releasing "
                "the Lease is part of the shutdown"
            )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> OperatorSettings:
        """Settings from OSTINATO_<FIELD> variables (namespaces comma-separated), then overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            if name == "namespaces":
                values[name] = tuple(ns.strip() for ns in raw.split(",") if ns.strip())
            elif cls.model_fields[name].annotation in ("bool", bool):
                values[name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def metrics_scraper(self) -> bool:
        """Whether a metrics scraper is admitted: one of its two selectors is set."""
        return not (
            self.network_policy_metrics_scraper_namespace_selector.empty
            and self.network_policy_metrics_scraper_pod_selector.empty
        )

    @property
    def stale_after_seconds(self) -> float:
        """A status older than this was not kept up to date: the refresh, plus two rounds."""
        return self.status_refresh_seconds + 2 * self.status_interval_seconds

    def hub_url(self, name: str, namespace: str) -> str:
        return self.hub_url_template.format(name=name, namespace=namespace).rstrip("/")
