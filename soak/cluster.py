"""The soak on the project's single-node Kubernetes: the operator installed from the chart into a
namespace of its own, the workload as a Workflow whose loop pods get their records directory
from a webhook (soak.admission); faults delete loop pods, the hub's pod and the operator's pod.

Set-up goes through the project's cluster tooling (hack.k8s: the cluster kept up as `make
cluster-up` does, the image as `make image-local` builds it, the chart as the end-to-end tests
install it), under the machine's cluster lock; the run itself does not hold the lock, so other
sessions can use the cluster meanwhile, in their own namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3
import yaml
from pydantic import BaseModel, Field

from hack.k8s import binaries, chart, images
from hack.k8s._lock import LockBusyError, LockReenteredError
from hack.k8s.cluster import Cluster, locked, why_unavailable

from ._http import http_json
from .admission import NAMESPACE_LABEL, RECORDS_MOUNT, RecordsWebhook
from .chaos import Fault, Planned, log
from .collect import container_pids
from .runner import RunSettings, SoakError
from .workload import NAME, document, loop_replicas

__all__ = ["ClusterHost", "ClusterSettings"]

#: The ostinato image's user, who writes the records.
IMAGE_UID = 10001
#: What the workload's nodes need in the loop pods (soak.nodes and what it imports).
NODE_MODULES = ("__init__.py", "nodes.py", "records.py")
GROUP, VERSION, PLURAL = "ostinato.dev", "v1alpha1", "workflows"
# The project's cluster is reached without verifying its self-signed certificate (as the tests
# do): one warning per API call would bury the soak's own lines.
warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)


class ClusterSettings(BaseModel):
    namespace: str = Field("ostinato-soak", description="The Workflow's namespace.")
    operator_namespace: str = Field("ostinato-soak-system", description="The operator's.")
    release: str = Field("soak", description="The chart's release name.")
    #: The image tag the soak's pods run: its own, so that another session importing a new
    #: localhost/ostinato:dev meanwhile does not change what a recreated pod runs.
    image: str = Field("localhost/ostinato:soak")
    webhook: str = Field("soak.ostinato.dev", description="The MutatingWebhookConfiguration.")
    lock_wait_seconds: float = Field(
        1800.0,
        gt=0,
        description="How long to wait for another session's hold on the cluster (a test run "
        "holds it throughout) before giving up.",
    )
    ready_timeout_seconds: float = Field(300.0, gt=0)


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class ClusterHost:
    name = "cluster"
    description = (
        "The project's single-node Kubernetes (`make cluster-up`): the operator from the chart, "
        "a pod per loop replica and one for the hub, queues over tcp:// with CURVE; faults "
        "delete a random loop pod (graceful or forced), force-delete the hub's pod twice and "
        "delete the operator's pod once."
    )

    def __init__(
        self, out: Path, settings: RunSettings, cluster: ClusterSettings | None = None
    ) -> None:
        self.out = out
        self.settings = settings
        self.config = cluster or ClusterSettings()
        self.records_dir = out / "records"
        self.code_dir = out / "code"
        self.cluster = Cluster()
        self._notes: set[str] = set()
        self.core: Any = None
        self.custom: Any = None

    # -- set-up and tear-down ------------------------------------------------------------

    def _directories(self) -> None:
        """Records writable by the image's user; the node modules copied (a snapshot: editing
        the checkout during a run changes nothing in the pods)."""
        shutil.rmtree(self.records_dir, ignore_errors=True)
        shutil.rmtree(self.code_dir, ignore_errors=True)
        self.records_dir.mkdir(parents=True)
        os.chown(self.records_dir, IMAGE_UID, IMAGE_UID)
        self.records_dir.chmod(0o775)
        package = self.code_dir / "soak"
        package.mkdir(parents=True)
        here = Path(__file__).parent
        for name in NODE_MODULES:
            shutil.copy(here / name, package / name)

    def _image(self) -> None:
        why = why_unavailable()
        if why is not None:
            raise SoakError(why)
        try:
            with locked(self.config.lock_wait_seconds):
                started = time.monotonic()
                self.cluster.up(reuse=True, keep=True)
                built = self.cluster.ensure_image()
                images.ctr(
                    self.cluster.containerd_socket, "images", "tag", "--force", built,
                    self.config.image,
                )  # fmt: skip
        except (binaries.Unavailable, LockBusyError, LockReenteredError) as exc:
            raise SoakError(str(exc)) from None
        log(f"cluster up, {self.config.image} ready ({time.monotonic() - started:.0f} s)")

    def _clean(self) -> None:
        """What an interrupted run left: its release, namespaces and webhook."""
        cfg = self.config
        chart.uninstall(self.cluster, cfg.release, cfg.operator_namespace, [cfg.namespace])
        self.cluster.kubectl(
            "delete", "mutatingwebhookconfiguration", cfg.webhook, "--ignore-not-found",
            check=False,
        )  # fmt: skip

    def _workflow_ready(self) -> bool:
        body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.config.namespace, PLURAL, NAME
        )
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        from kubernetes.client import CoreV1Api, CustomObjectsApi

        cfg = self.config
        self._directories()
        self._image()
        api = self.cluster.api_client()
        self.core, self.custom = CoreV1Api(api), CustomObjectsApi(api)
        self._clean()
        webhook = RecordsWebhook(cfg.webhook, NAMESPACE_LABEL, self.records_dir, self.code_dir)
        webhook.start()
        try:
            self.cluster.kubectl("create", "namespace", cfg.namespace)
            self.cluster.kubectl("label", "namespace", cfg.namespace, f"{NAMESPACE_LABEL}=true")
            self.cluster.kubectl("apply", "-f", "-", input=json.dumps(webhook.configuration()))
            chart.install(
                self.cluster, cfg.release, cfg.operator_namespace, image=cfg.image,
                watch=[cfg.namespace],
                # The webhook is registered cluster-wide under one name: this soak's operator
                # must not take it from the operator of a test running beside it.
                values={"webhook.enabled": "false"},
            )  # fmt: skip
            workload = self.settings.workload.model_copy(update={"pool": "thread"})
            manifest = yaml.safe_dump(document(workload, RECORDS_MOUNT), sort_keys=False)
            (self.out / "workflow.yaml").write_text(manifest)
            self.cluster.kubectl("apply", "-n", cfg.namespace, "-f", "-", input=manifest)
            deadline = time.monotonic() + cfg.ready_timeout_seconds
            while not self._workflow_ready():
                if time.monotonic() > deadline:
                    raise SoakError(
                        f"Workflow {NAME} not Ready in {cfg.ready_timeout_seconds:.0f} s"
                    )
                time.sleep(2)
            self._check_mounts()
            log(f"Workflow {cfg.namespace}/{NAME} Ready")
            yield
        finally:
            with contextlib.suppress(Exception):
                self._save_logs()
            self._clean()
            webhook.close()
            api.close()  # type: ignore[no-untyped-call]

    def _check_mounts(self) -> None:
        for pod in self._pods(self.config.namespace, "app.kubernetes.io/component=loop"):
            volumes = {v.name for v in pod.spec.volumes or []}
            if "soak-records" not in volumes:
                raise SoakError(
                    f"pod {pod.metadata.name} has no soak-records volume: the webhook "
                    f"{self.config.webhook} did not mutate it"
                )

    def _save_log(self, namespace: str, pod: str) -> None:
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        got = self.cluster.kubectl("logs", "-n", namespace, pod, "--tail=5000", check=False)
        (logs / f"{pod}.log").write_text(got.stdout + got.stderr)

    def _save_logs(self) -> None:
        """The operator's and the hub's logs and the namespace's events, for when a figure
        needs explaining (the pods deleted by faults left theirs as they went)."""
        cfg = self.config
        for namespace, selector in (
            (cfg.operator_namespace, self._operator_selector()),
            (cfg.namespace, self._hub_selector()),
        ):
            for pod in self._pods(namespace, selector):
                self._save_log(namespace, pod.metadata.name)
        events = self.cluster.kubectl(
            "get", "events", "-n", cfg.namespace, "-o", "wide", "--sort-by=.lastTimestamp",
            check=False,
        )  # fmt: skip
        (self.out / "logs" / "events.txt").write_text(events.stdout + events.stderr)

    # -- pods ----------------------------------------------------------------------------

    def _pods(self, namespace: str, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    def _hub_selector(self) -> str:
        return f"ostinato.dev/workflow={NAME},app.kubernetes.io/component=hub"

    def _operator_selector(self) -> str:
        return (
            f"app.kubernetes.io/instance={self.config.release},app.kubernetes.io/component=operator"
        )

    def loop_targets(self) -> list[str]:
        return [
            f"{NAME}-{loop}-{replica}"
            for loop, n in loop_replicas(self.settings.workload).items()
            for replica in range(n)
        ]

    def fault_hows(self) -> tuple[list[str], str, str | None]:
        return ["delete", "force-delete"], "force-delete", "delete"

    def _delete(self, namespace: str, pod: Any, how: str) -> None:
        from kubernetes.client import V1DeleteOptions

        grace = 0 if how == "force-delete" else None
        self.core.delete_namespaced_pod(
            pod.metadata.name, namespace, body=V1DeleteOptions(grace_period_seconds=grace)
        )

    def _live(self, namespace: str, selector: str) -> Any:
        pods = [p for p in self._pods(namespace, selector) if p.metadata.deletion_timestamp is None]
        if not pods:
            raise RuntimeError(f"no pod {selector} in {namespace}")
        return pods[0]

    def inject(self, planned: Planned) -> Fault:
        cfg = self.config
        if planned.kind == "loop":
            namespace = cfg.namespace
            pod = self.core.read_namespaced_pod(planned.target, namespace)
        elif planned.kind == "hub":
            namespace = cfg.namespace
            pod = self._live(namespace, self._hub_selector())
        else:
            namespace = cfg.operator_namespace
            pod = self._live(namespace, self._operator_selector())
        if planned.kind != "loop":  # its log goes with it: keep it
            self._save_log(namespace, pod.metadata.name)
        at = time.time()
        self._delete(namespace, pod, planned.how)
        name = pod.metadata.name
        return Fault(
            kind=planned.kind, target=name, how=planned.how,
            loop=(pod.metadata.labels or {}).get("ostinato.dev/loop"), at=at,
            old=pod.metadata.uid, match_host=name if planned.kind == "loop" else None,
        )  # fmt: skip

    def replaced(self, fault: Fault) -> Fault | None:
        from kubernetes.client.exceptions import ApiException

        cfg = self.config
        if fault.kind == "loop":
            try:
                pods = [self.core.read_namespaced_pod(fault.target, cfg.namespace)]
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        elif fault.kind == "hub":
            pods = self._pods(cfg.namespace, self._hub_selector())
        else:
            pods = self._pods(cfg.operator_namespace, self._operator_selector())
        for pod in pods:
            if pod.metadata.uid != fault.old and _ready(pod):
                return fault.model_copy(
                    update={"replaced_at": time.time(), "new": pod.metadata.uid}
                )
        return None

    def processes(self) -> dict[str, tuple[str, list[int]]]:
        running: dict[str, tuple[str, str]] = {}
        for pod in self._pods(self.config.namespace, f"ostinato.dev/workflow={NAME}"):
            labels = pod.metadata.labels or {}
            if labels.get("app.kubernetes.io/component") == "hub":
                name = "hub"
            else:
                name = f"{labels.get('ostinato.dev/loop')}-{labels.get('ostinato.dev/replica')}"
            for status in (pod.status.container_statuses if pod.status else None) or []:
                self._watch(pod, status)
                if status.state and status.state.running and status.container_id:
                    cid = status.container_id.split("://")[-1]
                    running[name] = (cid[:12], cid)
        pids = container_pids({cid for _, cid in running.values()})
        return {name: (key, pids[cid]) for name, (key, cid) in running.items() if pids[cid]}

    def _watch(self, pod: Any, status: Any) -> None:
        """Note what the chaos did not do: a container restarted in its pod (it crashed or
        its liveness probe failed), a pod running another image than the soak's."""
        name = pod.metadata.name
        if status.restart_count:
            self._notes.add(
                f"pod {name} (uid {pod.metadata.uid[:8]}): its container restarted "
                f"{status.restart_count} time(s) within the pod (not a fault of the chaos)"
            )
        image = next((c.image for c in pod.spec.containers), None)
        if image is not None and image != self.config.image:
            self._notes.add(f"pod {name} ran image {image}, not {self.config.image}")

    def stop_writers(self) -> None:
        patch = [{"op": "replace", "path": "/spec/loops/0/state", "value": "paused"}]
        self.cluster.kubectl(
            "patch", "workflow", NAME, "-n", self.config.namespace, "--type=json",
            "-p", json.dumps(patch),
        )  # fmt: skip

    def queue_depths(self) -> dict[str, int]:
        hub = self._live(self.config.namespace, self._hub_selector())
        status = http_json(f"http://{hub.status.pod_ip}:8080/status")
        return {q["name"]: int(q["depth"]) for q in status["queues"]}

    def notes(self) -> list[str]:
        return sorted(self._notes)
