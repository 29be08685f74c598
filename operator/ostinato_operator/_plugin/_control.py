"""`pause`, `resume`, `stop` and `scale`: one JSON patch per command, applied only to the version
of the Workflow it was computed from, and `--wait` for the status to show the outcome."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from ostinato import DesiredState

from .._crd import GROUP, PLURAL, VERSION
from ._connect import Target
from ._errors import PluginError
from ._workflows import api_message, custom_api, get_workflow, loop_index

__all__ = ["Outcome", "patch_workflow", "scale", "scale_bounds", "set_state", "wait_for_states"]

_JSON_PATCH = "application/json-patch+json"
#: How many times a patch is computed again after a concurrent change of the Workflow.
ATTEMPTS = 5

Ops = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Outcome:
    """What a patch left: the Workflow as patched, the loops it was about, how many attempts
    it took, and for a scale the replicas each of those loops must have ready."""

    workflow: dict[str, Any]
    loops: list[str]
    attempts: int
    replicas: int | None = None

    @property
    def generation(self) -> int:
        return int(self.workflow["metadata"].get("generation") or 0)


def patch_workflow(target: Target, name: str, ops: Ops) -> tuple[dict[str, Any], int]:
    """Read the Workflow, compute ``ops`` from it and apply them only if it is still that version
    (the patch sets metadata.resourceVersion, which the API server checks: 409 otherwise); on a
    conflict read it again and recompute, up to ATTEMPTS times. ``ops`` raises PluginError for bad
    input before anything is written, so nothing is ever half-applied."""
    api = custom_api(target)
    for attempt in range(1, ATTEMPTS + 1):
        workflow = get_workflow(target, name)
        changes = ops(workflow)
        version = workflow["metadata"]["resourceVersion"]
        body = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
            *changes,
        ]
        try:
            patched: dict[str, Any] = api.patch_namespaced_custom_object(
                GROUP, VERSION, target.namespace, PLURAL, name, body, _content_type=_JSON_PATCH
            )
        except ApiException as exc:
            if exc.status == 409 or (exc.status == 422 and _moved_on(target, name, version)):
                continue  # changed since we read it: compute the patch again
            if exc.status == 404:
                raise PluginError(
                    f"workflow {name!r} not found in namespace {target.namespace!r}"
                ) from None
            raise PluginError(f"workflow {name!r}: {api_message(exc)}") from None
        return patched, attempt
    raise PluginError(
        f"workflow {name!r} changed {ATTEMPTS} times while being patched (a concurrent edit): "
        "nothing was applied; try again"
    )


def _moved_on(target: Target, name: str, version: str) -> bool:
    """After a 422: whether the Workflow changed since ``version`` was read. A failed `test` of a
    loop's index (the loops moved) is a bare 422 with no cause (1.20 says only "the server
    rejected our request"), the same as for other bad patches; a new version tells them apart."""
    try:
        now = get_workflow(target, name)
    except PluginError:
        return False
    return bool(now["metadata"]["resourceVersion"] != version)


def _loop_ops(loops: Sequence[str], field: str, value: Any) -> Ops:
    def ops(workflow: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for loop in loops:
            index = loop_index(workflow, loop)  # raises, naming the loop, before any write
            # The index was read from this version; the test keeps it honest all the same.
            out.append({"op": "test", "path": f"/spec/loops/{index}/name", "value": loop})
            out.append({"op": "add", "path": f"/spec/loops/{index}/{field}", "value": value})
        return out

    return ops


def set_state(target: Target, name: str, loops: Sequence[str], state: DesiredState) -> Outcome:
    """The loops' own `state` (every loop's, via spec.state, when none is named)."""
    if loops:
        if len(set(loops)) != len(loops):
            raise PluginError(f"a loop is named twice: {' '.join(loops)}")
        ops = _loop_ops(loops, "state", state.value)
    else:

        def ops(workflow: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"op": "add", "path": "/spec/state", "value": state.value}]

    workflow, attempts = patch_workflow(target, name, ops)
    every = [lp["name"] for lp in workflow["spec"].get("loops") or []]
    return Outcome(workflow, list(loops) or every, attempts)


def scale(target: Target, name: str, loop: str, replicas: int) -> Outcome:
    """A fixed number of replicas; an autoscaled loop is refused, naming its bounds' flags."""
    if replicas < 0:
        raise PluginError(f"--replicas must be >= 0, got {replicas}")
    fixed = _loop_ops([loop], "replicas", replicas)

    def ops(workflow: dict[str, Any]) -> list[dict[str, Any]]:
        changes = fixed(workflow)  # names a missing loop first
        if _autoscale(workflow, loop) is not None:
            raise PluginError(
                f"loop {loop!r} is autoscaled: give --min-replicas and/or --max-replicas"
            )
        return changes

    workflow, attempts = patch_workflow(target, name, ops)
    return Outcome(workflow, [loop], attempts, replicas=replicas)


def _autoscale(workflow: dict[str, Any], loop: str) -> dict[str, Any] | None:
    spec = (workflow["spec"].get("loops") or [])[loop_index(workflow, loop)]
    found: dict[str, Any] | None = spec.get("autoscale")
    return found


def scale_bounds(
    target: Target, name: str, loop: str, low: int | None, high: int | None
) -> Outcome:
    """An autoscaled loop's minReplicas and/or maxReplicas; both are checked together, as the
    runtime will (0 <= min <= max, max >= 1), before anything is written."""
    if low is None and high is None:
        raise PluginError("give --replicas, or --min-replicas and/or --max-replicas")

    def ops(workflow: dict[str, Any]) -> list[dict[str, Any]]:
        index = loop_index(workflow, loop)
        bounds = _autoscale(workflow, loop)
        if bounds is None:
            raise PluginError(f"loop {loop!r} is not autoscaled: give --replicas")
        new_low = bounds.get("minReplicas", 1) if low is None else low
        new_high = bounds.get("maxReplicas") if high is None else high
        if new_low < 0 or new_high is None or new_high < max(1, new_low):
            raise PluginError(
                f"loop {loop!r}: minReplicas {new_low} and maxReplicas {new_high} need "
                "0 <= minReplicas <= maxReplicas and maxReplicas >= 1"
            )
        out: list[dict[str, Any]] = [
            {"op": "test", "path": f"/spec/loops/{index}/name", "value": loop}
        ]
        for field, value in (("minReplicas", low), ("maxReplicas", high)):
            if value is not None:
                path = f"/spec/loops/{index}/autoscale/{field}"
                out.append({"op": "add", "path": path, "value": value})
        return out

    workflow, attempts = patch_workflow(target, name, ops)
    return Outcome(workflow, [loop], attempts)


def _desired(workflow: dict[str, Any], loop: str) -> DesiredState:
    """A loop's desired state by the spec: the stricter of spec.state and its own state."""
    spec = workflow.get("spec") or {}
    own: dict[str, Any] = next((lp for lp in spec.get("loops") or [] if lp.get("name") == loop), {})
    return DesiredState.combine(
        DesiredState(spec.get("state") or DesiredState.RUNNING),
        DesiredState(own.get("state") or DesiredState.RUNNING),
    )


def _pending(workflow: dict[str, Any], outcome: Outcome) -> str | None:
    """What the status does not show yet, or None when every loop is in its desired state."""
    status = workflow.get("status") or {}
    seen = status.get("observedGeneration")
    if seen is None or seen < outcome.generation:
        return f"the operator has not taken in generation {outcome.generation} yet (at {seen})"
    reported = {lp["name"]: lp for lp in status.get("loops") or []}
    for loop in outcome.loops:
        got = reported.get(loop)
        if got is None:
            return f"loop {loop} is not in the status yet"
        # What the patched spec asks, not what the status says is asked: the generation may be
        # taken in (observedGeneration) before the status round that reports the new desire.
        desired = _desired(outcome.workflow, loop)
        if (got.get("desiredState"), got.get("state")) != (desired, desired):
            return f"loop {loop} is {got.get('state')}, desired {desired}"
        ready, wanted = got.get("replicasReady", 0), got.get("replicas")
        scaled = outcome.replicas is None or desired == DesiredState.STOPPED
        if not scaled and (wanted, ready) != (outcome.replicas, outcome.replicas):
            return f"loop {loop} has {ready}/{wanted} replicas ready"
    return None


def wait_for_states(
    target: Target,
    name: str,
    outcome: Outcome,
    timeout_seconds: float,
    poll_seconds: float = 0.5,
) -> None:
    """Until the status shows every loop of ``outcome`` in its desired state (and, for a scale,
    with all its replicas ready), for the patched generation; a PluginError saying what is still
    missing after ``timeout_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        pending = _pending(get_workflow(target, name), outcome)
        if pending is None:
            return
        if time.monotonic() >= deadline:
            raise PluginError(
                f"workflow {name!r}: timed out after {timeout_seconds:g} s: {pending}"
            )
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
