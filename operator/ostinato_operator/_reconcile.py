"""Makes a Workflow's children match its spec: create-or-patch every child, idempotently."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ostinato import Workflow

from ._admission import check
from ._children import (
    HASH_ANNOTATION,
    Owner,
    config_map,
    hub_deployment,
    hub_pvc,
    hub_service,
    loop_pods,
    network_policies,
    pod_finished,
    secret,
)
from ._keys import CONTROL_TOKEN_ENV, new_control_token, new_secret_data, secret_name
from ._kube import Kube
from ._settings import OperatorSettings

__all__ = [
    "InvalidSpecError",
    "Outcome",
    "ensure_control_token",
    "ensure_network_policies",
    "ensure_pods",
    "reconcile",
]

log = logging.getLogger("ostinato.operator.reconcile")


class InvalidSpecError(ValueError):
    """The runtime rejects the spec; the message is `ostinato validate`'s."""


@dataclass
class Outcome:
    """What one reconciliation changed (for events and logs)."""

    created: list[str] = field(default_factory=list)
    pods_created: list[str] = field(default_factory=list)
    pods_replaced: list[str] = field(default_factory=list)
    pods_failed: list[str] = field(default_factory=list)
    pods_removed: list[str] = field(default_factory=list)
    policies_removed: list[str] = field(default_factory=list)


def parse(body: Mapping[str, Any], settings: OperatorSettings) -> tuple[Workflow, list[str]]:
    """The Workflow model and admission warnings, or InvalidSpecError: the webhook's check,
    pod budget included, since the webhook may be off."""
    verdict = check(body, settings.max_pods_per_workflow)
    if verdict.workflow is None:
        raise InvalidSpecError(verdict.message)
    return verdict.workflow, verdict.warnings


def reconcile(
    kube: Kube,
    settings: OperatorSettings,
    body: Mapping[str, Any],
    scaled: Mapping[str, int] | None = None,
) -> Outcome:
    """Every child of the Workflow as its spec says (autoscaled loops: as ``scaled`` says);
    safe to repeat and to interrupt anywhere."""
    workflow, _ = parse(body, settings)
    owner = Owner.of(body)
    outcome = Outcome()
    kube.apply(config_map(owner, workflow))
    # The keys and the control token are made once: a Secret that exists keeps them (so they
    # are never rotated under running loops and a running hub); the freshly generated set is
    # dropped when the create finds it there. Only a token it lacks is added (before the hub's
    # Deployment, whose pod reads it).
    if kube.create(secret(owner, new_secret_data())):
        outcome.created.append(f"Secret {secret_name(owner.name)}")
    elif ensure_control_token(kube, owner):
        outcome.created.append(f"the control token in Secret {secret_name(owner.name)}")
    # Before the hub: its pod never runs without the policy that fences it.
    ensure_network_policies(kube, settings, owner, outcome)
    pvc = hub_pvc(owner, workflow, settings)
    if pvc is not None and kube.create(pvc):
        outcome.created.append(f"PersistentVolumeClaim {pvc['metadata']['name']}")
    kube.apply(hub_deployment(owner, workflow, settings))
    kube.apply(hub_service(owner))
    ensure_pods(kube, settings, owner, workflow, outcome, scaled)
    return outcome


def ensure_network_policies(
    kube: Kube, settings: OperatorSettings, owner: Owner, outcome: Outcome
) -> None:
    """The Workflow's NetworkPolicies as the settings say: applied when turned on; any other
    the operator made for this Workflow (all of them when turned off) deleted. A policy this
    Workflow does not own is never deleted, whatever its name or labels."""
    desired = network_policies(owner, settings)
    for policy in desired:
        kube.apply(policy)
    wanted = {policy["metadata"]["name"] for policy in desired}
    for found in kube.network_policies(owner.namespace, owner.name):
        meta = found["metadata"]
        owned = any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or [])
        if not owned or meta["name"] in wanted:
            continue
        if kube.delete_network_policy(owner.namespace, meta["name"], meta["uid"]):
            outcome.policies_removed.append(meta["name"])


def ensure_control_token(kube: Kube, owner: Owner) -> bool:
    """Add a control token to the workflow's Secret when it has none (one made by an operator
    from before control tokens), leaving its CURVE keys as they are; True if added. A token
    that is there is never replaced: the hub read it when it started."""
    name = secret_name(owner.name)
    for _ in range(5):
        found = kube.secret_value(owner.namespace, name, CONTROL_TOKEN_ENV)
        if found is None or found[0] is not None:
            return False  # gone (the next reconcile makes it whole) or complete
        if kube.add_to_secret(owner.namespace, name, new_control_token(), found[1]):
            log.info("added a control token to Secret %s/%s", owner.namespace, name)
            return True
    raise RuntimeError(f"Secret {name} kept changing while its control token was added")


def ensure_pods(
    kube: Kube,
    settings: OperatorSettings,
    owner: Owner,
    workflow: Workflow,
    outcome: Outcome | None = None,
    scaled: Mapping[str, int] | None = None,
) -> Outcome:
    """One pod per replica of every loop that is not stopped, each matching its spec hash.

    A pod whose hash differs (its loop's spec changed), that failed, or that belongs to a
    stopped loop is deleted; missing pods are created. A Succeeded pod whose loop finished (its
    termination message says so) ended for good: it is kept, not run again; one that Succeeded
    because its loop was told to stop (a hub's stale desired state) is replaced. A pod still
    terminating is left alone: its deletion event brings us back here to create the new one.
    """
    outcome = outcome or Outcome()
    desired = loop_pods(owner, workflow, settings, scaled)
    existing = {p["metadata"]["name"]: p for p in kube.loop_pods(owner.namespace, owner.name)}
    gone: set[str] = set()
    for name, pod in existing.items():
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        want = desired.get(name)
        phase = (pod.get("status") or {}).get("phase")
        if want is None:
            bucket = outcome.pods_removed
        elif (meta.get("annotations") or {}).get(HASH_ANNOTATION) != want["metadata"][
            "annotations"
        ][HASH_ANNOTATION]:
            bucket = outcome.pods_replaced
        elif phase == "Failed" or (phase == "Succeeded" and not pod_finished(pod)):
            bucket = outcome.pods_failed
        else:
            continue
        if kube.delete_pod(owner.namespace, name, meta.get("uid")):
            bucket.append(name)
            gone.add(name)
    for name, pod in desired.items():
        if (name not in existing or name in gone) and kube.create(pod):
            outcome.pods_created.append(name)
    return outcome
