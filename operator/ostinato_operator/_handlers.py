"""The kopf handlers: Workflow changes -> children, pod events -> replacements, admission."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from . import _metrics
from ._admission import check, sent_document
from ._children import Owner
from ._crd import GROUP, PLURAL, VERSION
from ._kube import Kube, now_rfc3339
from ._monitor import Monitor
from ._owners import cluster_role_owner, own_webhook_configs
from ._reconcile import InvalidSpecError, Outcome, ensure_pods, parse, reconcile
from ._settings import OperatorSettings
from ._status import invalid_status, previous_status, to_json
from ._webhook import NoWebhook, build_server

__all__: list[str] = []

log = logging.getLogger("ostinato.operator")

WORKFLOWS = (GROUP, VERSION, PLURAL)
LOOP_PODS = {
    "app.kubernetes.io/managed-by": "ostinato-operator",
    "app.kubernetes.io/component": "loop",
}


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod the ServiceAccount, elsewhere $KUBECONFIG as it is now (kopf's default login
    through the kubernetes client reads $KUBECONFIG only once, when that library is imported)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorSettings = memo.get("config") or OperatorSettings.from_env()
    memo.config = config
    # One active replica comes from the Lease held by the CLI (see _leader.py), not peering.
    settings.peering.standalone = True
    # Handler progress and the last-handled spec live in our own annotations; .status is ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.posting.level = logging.WARNING  # our own events say what happened
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # Workflows' CRD is installed with the chart: no need to watch CRDs or namespaces (and no
    # RBAC for them).
    settings.scanning.disabled = True
    if config.webhook:
        settings.admission.server = build_server(config)
        settings.admission.managed = config.webhook_config_name
    else:
        settings.admission.server = NoWebhook()
    if config.network_policy and config.network_policy_operator_namespace is None:
        log.warning(
            "the operator's namespace is unknown (OSTINATO_NETWORK_POLICY_OPERATOR_NAMESPACE): "
            "the hubs' NetworkPolicies admit no operator to their HTTP port"
        )
    kube = Kube.connect()
    if config.webhook and config.webhook_owner_cluster_role:
        # Before kopf's own create (which then finds them): owned, so helm uninstall removes them.
        await asyncio.to_thread(_own_webhook_configs, kube, config)
    monitor = Monitor(kube, config)
    memo.kube = kube
    memo.monitor = monitor
    memo.monitor_task = asyncio.create_task(monitor.run(), name="ostinato-status")


def _own_webhook_configs(kube: Kube, config: OperatorSettings) -> None:
    assert config.webhook_owner_cluster_role is not None
    timeout = config.lease_request_timeout_seconds
    owner = cluster_role_owner(kube.api, config.webhook_owner_cluster_role, timeout)
    if owner is not None:
        own_webhook_configs(kube.api, config.webhook_config_name, owner, timeout)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("monitor_task")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    kube = memo.get("kube")
    if kube is not None:
        kube.close()


@kopf.on.probe(id="workflows")
def probe(memo: kopf.Memo, **_: Any) -> int:
    monitor: Monitor = memo.monitor
    return len(monitor.tracked)


# failurePolicy Ignore (ignore_failures): an operator that is down (crash-looping, upgrading)
# must not block every write of every Workflow in the cluster. What the webhook would refuse,
# the operator refuses again before making children (parse): a Failed status instead.
@kopf.on.validate(*WORKFLOWS, id="workflow", operations=["CREATE", "UPDATE"], ignore_failures=True)
def validate(body: kopf.Body, warnings: list[str], memo: kopf.Memo, **kwargs: Any) -> None:
    """The runtime's check, the pod budget, and the fields a `kubectl apply` sent that the API
    server pruned before this webhook saw the object (`old`: kopf passes it on UPDATE)."""
    config: OperatorSettings = memo.config
    sent = sent_document(body, kwargs.get("old"))
    verdict = check(body, config.max_pods_per_workflow, sent=sent)
    warnings.extend(verdict.warnings)
    if verdict.errors:
        raise kopf.AdmissionError(verdict.message, code=422)


def _report(kube: Kube, body: Mapping[str, Any], outcome: Outcome, first: bool) -> None:
    if first:
        kube.event(
            body,
            "Created",
            f"created the hub ({body['metadata']['name']}-hub), its ConfigMap"
            + "".join(f", {c}" for c in outcome.created)
            + f" and {len(outcome.pods_created)} loop pod(s)",
        )
    elif outcome.pods_created and not outcome.pods_replaced and not outcome.pods_failed:
        kube.event(body, "LoopPodCreated", f"created {', '.join(outcome.pods_created)}")
    if outcome.pods_replaced:
        kube.event(
            body,
            "LoopPodReplaced",
            f"loop spec changed: replaced {', '.join(outcome.pods_replaced)}",
        )
    if outcome.pods_failed:
        kube.event(
            body,
            "LoopPodReplaced",
            f"pods ended: replaced {', '.join(outcome.pods_failed)}",
            warning=True,
        )
    if outcome.pods_removed:
        kube.event(body, "LoopPodsRemoved", f"removed {', '.join(outcome.pods_removed)}")
    if outcome.policies_removed:
        kube.event(
            body,
            "NetworkPoliciesRemoved",
            f"removed NetworkPolicy {', '.join(outcome.policies_removed)}: the operator's "
            "settings no longer call for it (networkPolicy.enabled)",
        )


@kopf.on.resume(*WORKFLOWS)
@kopf.on.create(*WORKFLOWS)
@kopf.on.update(*WORKFLOWS)
def workflow_changed(body: kopf.Body, reason: str, memo: kopf.Memo, **_: Any) -> None:
    """Create-or-patch every child. Raising makes kopf retry with backoff. A changed desired
    state (a pause) goes to the hub first, not at the status loop's next round."""
    kube: Kube = memo.kube
    monitor: Monitor = memo.monitor
    monitor.track(body)
    if reason == "update":
        monitor.post_changed_states(body)
    config: OperatorSettings = memo.config
    meta = body["metadata"]
    previous = previous_status(body)
    with _metrics.timed(str(reason)):
        try:
            outcome = reconcile(kube, config, body, monitor.scaled(body))
        except InvalidSpecError as exc:
            kube.event(body, "InvalidSpec", str(exc), warning=True)
            status = invalid_status(meta.get("generation"), str(exc), previous, now_rfc3339())
            kube.patch_status(meta["namespace"], meta["name"], to_json(status))
            raise kopf.PermanentError(str(exc)) from None
        except kopf.PermanentError:
            raise
        except Exception as exc:
            kube.event(body, "ReconcileFailed", f"{type(exc).__name__}: {exc}", warning=True)
            raise kopf.TemporaryError(str(exc), delay=5) from exc
    _report(kube, body, outcome, first=previous.observed_generation is None and reason == "create")
    monitor.reconciled(body)
    kube.patch_status(
        meta["namespace"], meta["name"], {"observedGeneration": meta.get("generation")}
    )


@kopf.on.event(*WORKFLOWS)
def workflow_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keep the status loop's list of Workflows current (no finalizer needed for this)."""
    monitor: Monitor = memo.monitor
    if event.get("type") == "DELETED" or body["metadata"].get("deletionTimestamp"):
        monitor.forget(body["metadata"]["namespace"], body["metadata"]["name"])
    else:
        monitor.track(body)


@kopf.on.event("", "v1", "pods", labels=LOOP_PODS)
def loop_pod_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A loop pod that is deleted or failed is replaced at once (unless its loop is gone); one
    that Succeeded ended for good and is kept (ensure_pods), but its status changes now."""
    phase = (body.get("status") or {}).get("phase")
    if event.get("type") != "DELETED" and phase not in ("Failed", "Succeeded"):
        return
    meta = body["metadata"]
    name = meta.get("labels", {}).get("ostinato.dev/workflow")
    if not name:
        return
    kube: Kube = memo.kube
    monitor: Monitor = memo.monitor
    if monitor.get(meta["namespace"], name) is None:
        return  # not a Workflow we manage (or one being deleted)
    wf = kube.get_workflow(meta["namespace"], name)
    if wf is None or wf["metadata"].get("deletionTimestamp"):
        return
    try:
        workflow, _warnings = parse(wf, memo.config)
    except InvalidSpecError:
        return
    with _metrics.timed("pod"):
        outcome = ensure_pods(kube, memo.config, Owner.of(wf), workflow, scaled=monitor.scaled(wf))
    _report(kube, wf, outcome, first=False)
