"""The status loop: each interval, per Workflow, one GET of its hub's /status, the pods, the
desired states pushed to the hub (POST /control), events on changes, and a size-capped .status.

A changed desired state is also posted at once, from the update handler (post_changed_states);
the rounds post again what the hub missed (it was down, or restarted and forgot). Posts carry
the workflow's control token, read from its Secret once and kept (read again after the hub
refuses it); it never goes into the status, an event or a log."""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ostinato import DesiredState, LoopState, Workflow, WorkflowStatus
from ostinato.lowlevel import ScaleDecision

from . import _metrics
from ._autoscaling import Scaling, replica_count
from ._children import Owner, effective_state, loop_pods, needs_state_volume
from ._hub_client import HubError, get_status, post_control
from ._keys import CONTROL_TOKEN_ENV, secret_name
from ._kube import ApiException, Kube, now_rfc3339
from ._problems import unschedulable
from ._rates import HubSample, hub_sample, rates_between
from ._reconcile import InvalidSpecError, ensure_pods, parse
from ._settings import OperatorSettings
from ._status import Observation, compute_status, fit, invalid_status, previous_status
from ._status_models import UNKNOWN, LoopSummary, Phase, WorkflowResourceStatus

__all__ = ["Monitor", "Tracked"]

log = logging.getLogger("ostinato.operator.status")

Key = tuple[str, str]


@dataclass
class Tracked:
    """What the operator remembers of one Workflow between rounds."""

    body: dict[str, Any]
    workflow: Workflow | None = None
    invalid: str | None = None
    parsed_version: str | None = None
    #: The desired state last posted to the hub, per loop.
    posted: dict[str, DesiredState] = field(default_factory=dict)
    #: The workflow's control token, once read from its Secret (None: not read yet, or refused
    #: by the hub and to be read again). A secret: never shown.
    token: str | None = field(default=None, repr=False)
    #: A missing token was logged (once, until one is found).
    token_missing_logged: bool = False
    hub_seen: bool = False
    hub_up: bool = False
    status: WorkflowResourceStatus | None = None
    written: dict[str, Any] | None = None
    #: time.monotonic() of the last status write: unchanged status is rewritten when it is old.
    written_at: float = 0.0
    #: The last read of the hub, for the next round's rates.
    sample: HubSample | None = None
    #: Autoscaled loops: decisions and desired counts.
    scaling: Scaling = field(default_factory=Scaling)
    #: metadata.generation whose children the reconcile handler finished (observedGeneration).
    reconciled: int | None = None
    #: Held while parsing the body and posting desired states: the status round (a worker
    #: thread) and the update handler (kopf's) both do, and the newest spec must win.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class Monitor:
    """Tracks the Workflows seen by the watch and runs the status rounds over them."""

    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.tracked: dict[Key, Tracked] = {}
        self._lock = threading.Lock()
        self.rounds = 0

    # -- the watch feeds these --------------------------------------------------------------------

    def track(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            entry = self.tracked.get(key)
            if entry is None or entry.body["metadata"].get("uid") != meta.get("uid"):
                self.tracked[key] = Tracked(body=dict(body))
            else:
                entry.body = dict(body)
            _metrics.managed_workflows.set(len(self.tracked))

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self.tracked.pop((namespace, name), None)
            _metrics.managed_workflows.set(len(self.tracked))

    def reconciled(self, body: Mapping[str, Any]) -> None:
        """The reconcile handler made the children of this generation."""
        self.track(body)
        meta = body["metadata"]
        entry = self.get(meta["namespace"], meta["name"])
        if entry is not None:
            entry.reconciled = meta.get("generation")

    def get(self, namespace: str, name: str) -> Tracked | None:
        with self._lock:
            return self.tracked.get((namespace, name))

    # -- rounds -----------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self.settings.status_interval_seconds)

    async def round(self) -> None:
        with self._lock:
            keys = list(self.tracked)
        gate = asyncio.Semaphore(self.settings.workers)

        async def one(key: Key) -> None:
            async with gate:
                try:
                    await asyncio.to_thread(self.observe, key)
                except Exception:
                    _metrics.status_rounds.labels("error").inc()
                    log.exception("status round for %s/%s failed", *key)

        await asyncio.gather(*(one(k) for k in keys))
        self.rounds += 1

    def _parsed(self, entry: Tracked) -> None:
        version = entry.body["metadata"].get("resourceVersion")
        if entry.parsed_version == version and version is not None:
            return
        try:
            entry.workflow, _ = parse(entry.body, self.settings)
            entry.invalid = None
        except InvalidSpecError as exc:
            entry.workflow, entry.invalid = None, str(exc)
        entry.parsed_version = version

    def observe(self, key: Key) -> None:
        """One status round for one Workflow (runs in a worker thread)."""
        entry = self.get(*key)
        if entry is None:
            return
        with entry.lock:
            self._parsed(entry)
            body, workflow, invalid = entry.body, entry.workflow, entry.invalid
        meta = body["metadata"]
        previous = entry.status or previous_status(body)
        # Only what the reconcile handler finished counts as observed, not what the watch saw.
        generation = (
            entry.reconciled if entry.reconciled is not None else previous.observed_generation
        )
        now = now_rfc3339()
        if workflow is None:
            self._write(entry, invalid_status(generation, invalid or "", previous, now))
            return
        if entry.status is None:
            self._stale_event(entry, previous)
        url = self.settings.hub_url(meta["name"], meta["namespace"])
        hub: WorkflowStatus | None = None
        hub_error = None
        try:
            hub = get_status(url, self.settings.hub_timeout_seconds)
            _metrics.status_rounds.labels("ok").inc()
        except HubError as exc:
            hub_error = str(exc)
            _metrics.status_rounds.labels("hub_error").inc()
        taken = time.monotonic()
        pods = self.kube.workflow_pods(meta["namespace"], meta["name"])
        owner = Owner.of(body)
        scaled = entry.scaling.counts(body.get("status"))
        changed = []
        if hub is not None:
            changed = self._autoscale(entry, workflow, hub, taken, pods)
            scaled = entry.scaling.counts(None)
        if changed or self._pods_missing(owner, workflow, pods, scaled):
            outcome = ensure_pods(self.kube, self.settings, owner, workflow, scaled=scaled)
            scaled_pods = {p for _, _, names in changed for p in names}
            created = [p for p in outcome.pods_created if p not in scaled_pods]
            if created:
                self.kube.event(
                    body, "LoopPodCreated", f"created missing pods {', '.join(created)}"
                )
            for loop, decision, _ in changed:
                up = decision.desired > decision.previous
                self.kube.event(
                    body,
                    "ScaledUp" if up else "ScaledDown",
                    f"loop {loop}: {decision.previous} -> {decision.desired} replicas: "
                    f"{decision.reason}",
                )
            pods = self.kube.workflow_pods(meta["namespace"], meta["name"])
        self._replica_metrics(meta, workflow, scaled, pods)
        rates: Mapping[tuple[str, int], float] = {}
        if hub is not None:
            sample = hub_sample(hub, pods, taken)
            rates = rates_between(entry.sample, sample)
            entry.sample = sample
            self._push_states(entry, url, hub)
        else:
            entry.sample = None
        obs = Observation(
            hub, rates, hub_error, pods, volume=self._volume(owner, workflow, pods), scaled=scaled
        )
        status = compute_status(workflow, generation, obs, previous, now, url)
        self._events(entry, previous, status, hub_error)
        self._write(entry, status)

    def _volume(
        self, owner: Owner, workflow: Workflow, pods: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The hub's claim, read only when the scheduler could not place the hub: a Pending
        claim is then the likely cause (and a claim waiting for its consumer is no problem)."""
        if not needs_state_volume(workflow):
            return None
        hub_unplaced = any(
            (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "hub"
            and unschedulable(p) is not None
            for p in pods
        )
        return self.kube.get_pvc(owner.namespace, f"{owner.hub}-state") if hub_unplaced else None

    def _stale_event(self, entry: Tracked, previous: WorkflowResourceStatus) -> None:
        """First round of this process for a Workflow whose status nobody refreshed for longer
        than promised (statusRefreshSeconds): say for how long it was stale."""
        if previous.last_update_time is None:
            return
        try:
            written = datetime.datetime.strptime(
                previous.last_update_time, "%Y-%m-%dT%H:%M:%SZ"
            ).replace(tzinfo=datetime.UTC)
        except ValueError:
            return
        age = (datetime.datetime.now(datetime.UTC) - written).total_seconds()
        if age > self.settings.stale_after_seconds:
            self.kube.event(
                entry.body,
                "StatusStale",
                f"the status was last written at {previous.last_update_time}, {age:.0f} s ago: "
                "no operator kept it up to date meanwhile",
                warning=True,
            )

    def _autoscale(
        self,
        entry: Tracked,
        workflow: Workflow,
        hub: WorkflowStatus,
        taken: float,
        pods: list[dict[str, Any]],
    ) -> list[tuple[str, ScaleDecision, list[str]]]:
        """One decision per autoscaled loop; (loop, decision, pod names it adds) of those that
        change its count."""
        running = {lp.name: len(_loop_pods(pods, lp.name)) for lp in workflow.spec.loops}
        stopped = [
            lp.name
            for lp in workflow.spec.loops
            if effective_state(workflow, lp) is DesiredState.STOPPED
        ]
        owner = Owner.of(entry.body)
        out = []
        for loop, decision in entry.scaling.round(workflow, hub, taken, running, stopped):
            log.info(
                "%s/%s loop %s: %d -> %d replicas: %s",
                owner.namespace,
                owner.name,
                loop,
                decision.previous,
                decision.desired,
                decision.reason,
            )
            added = [f"{owner.name}-{loop}-{r}" for r in range(decision.previous, decision.desired)]
            out.append((loop, decision, added))
        return out

    def _replica_metrics(
        self,
        meta: Mapping[str, Any],
        workflow: Workflow,
        scaled: Mapping[str, int],
        pods: list[dict[str, Any]],
    ) -> None:
        for loop in workflow.spec.loops:
            if loop.autoscale is None:
                continue
            labels = (meta["namespace"], meta["name"], loop.name)
            stopped = effective_state(workflow, loop) is DesiredState.STOPPED
            desired = 0 if stopped else replica_count(loop, scaled)
            _metrics.loop_desired_replicas.labels(*labels).set(desired)
            _metrics.loop_current_replicas.labels(*labels).set(len(_loop_pods(pods, loop.name)))

    def _pods_missing(
        self,
        owner: Owner,
        workflow: Workflow,
        pods: list[dict[str, Any]],
        scaled: Mapping[str, int],
    ) -> bool:
        pods = [
            p
            for p in pods
            if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "loop"
        ]
        names = {p["metadata"]["name"] for p in pods}
        return any(name not in names for name in loop_pods(owner, workflow, self.settings, scaled))

    def scaled(self, body: Mapping[str, Any]) -> dict[str, int]:
        """Autoscaled loops' desired replicas as last decided (from the status after a restart),
        for a reconcile that must not undo them."""
        meta = body["metadata"]
        entry = self.get(meta["namespace"], meta["name"])
        if entry is None:
            return Scaling().counts(body.get("status"))
        return entry.scaling.counts(body.get("status"))

    def post_changed_states(self, body: Mapping[str, Any]) -> None:
        """A Workflow changed: post each loop's desired state that differs from the one last
        posted, now rather than at the next round. Blocking (kopf runs the update handler in
        its thread pool), at most one hub timeout when the hub does not answer: the first
        failure ends it, and the rounds post it again."""
        meta = body["metadata"]
        entry = self.get(meta["namespace"], meta["name"])
        if entry is not None:
            self._push_states(entry, self.settings.hub_url(meta["name"], meta["namespace"]))

    def _push_states(self, entry: Tracked, url: str, hub: WorkflowStatus | None = None) -> None:
        """POST /control for each loop whose desired state the hub may not have: never posted,
        changed since, or (with the hub's status) a replica disagreeing (a restarted hub
        forgets what it was told). Of the newest spec: one that arrives meanwhile waits."""
        with entry.lock:
            self._parsed(entry)
            workflow = entry.workflow
            if workflow is None:
                return
            token = None
            for loop in workflow.spec.loops:
                desired = effective_state(workflow, loop)
                reported = {r.state for r in hub.loops if r.name == loop.name} if hub else set()
                disagree = (desired is DesiredState.PAUSED and LoopState.RUNNING in reported) or (
                    desired is DesiredState.RUNNING and LoopState.PAUSED in reported
                )
                if entry.posted.get(loop.name) is desired and not disagree:
                    continue
                token = token or self._control_token(entry)
                if token is None:
                    return  # no Secret (yet) to read it from: the next round tries again
                try:
                    post_control(
                        url, loop.name, desired, self.settings.hub_timeout_seconds, token=token
                    )
                except HubError as exc:
                    log.warning("cannot set loop %s to %s: %s", loop.name, desired.value, exc)
                    if exc.code == 401:
                        entry.token = None  # a Secret made again: read it at the next post
                        return
                    if hub is None:
                        return  # not known to be up: the next round tries again
                    continue
                entry.posted[loop.name] = desired

    def _control_token(self, entry: Tracked) -> str | None:
        """The workflow's control token, read from its Secret the first time (and after the
        hub refused it); None, logged once, while the Secret or its token is missing."""
        if entry.token is None:
            meta = entry.body["metadata"]
            name = secret_name(meta["name"])
            found = self.kube.secret_value(meta["namespace"], name, CONTROL_TOKEN_ENV)
            entry.token = found[0] if found is not None else None
            if entry.token is None and not entry.token_missing_logged:
                log.warning(
                    "cannot post desired states to the hub of %s/%s yet: Secret %s has no %s",
                    meta["namespace"],
                    meta["name"],
                    name,
                    CONTROL_TOKEN_ENV,
                )
            entry.token_missing_logged = entry.token is None
        return entry.token

    def _events(
        self,
        entry: Tracked,
        previous: WorkflowResourceStatus,
        status: WorkflowResourceStatus,
        hub_error: str | None,
    ) -> None:
        body = entry.body
        if hub_error is None and not entry.hub_up:
            entry.hub_up = entry.hub_seen = True
            self.kube.event(body, "HubReady", f"the hub answers at {status.hub_url}")
        elif hub_error is not None and entry.hub_up:
            entry.hub_up = False
            self.kube.event(body, "HubUnreachable", hub_error, warning=True)
        before: dict[str, LoopSummary] = {lp.name: lp for lp in previous.loops}
        for lp in status.loops:
            old = before.get(lp.name)
            was = old.state if old is not None else LoopState.PENDING
            if lp.state == was or lp.state == UNKNOWN:
                continue
            if lp.state is LoopState.PAUSED:
                self.kube.event(body, "Paused", f"loop {lp.name} is paused (took effect)")
            elif lp.state is LoopState.RUNNING and was is LoopState.PAUSED:
                self.kube.event(body, "Resumed", f"loop {lp.name} runs again")
            elif lp.state is LoopState.STOPPED:
                self.kube.event(body, "Stopped", f"loop {lp.name} is stopped")
            elif lp.state is LoopState.FINISHED:
                self.kube.event(body, "Finished", f"loop {lp.name} ended by itself")
            elif lp.state is LoopState.ERROR:
                msg = f"loop {lp.name} is in error: {lp.last_error or 'see its pods'}"
                self.kube.event(body, "LoopError", msg, warning=True)
        first_wait = previous.phase is None and status.phase is Phase.PENDING
        if previous.phase != status.phase and status.phase is not None and not first_wait:
            ready = status.phase in (Phase.RUNNING, Phase.PAUSED)
            first = status.conditions[0]
            self.kube.event(
                body,
                "Ready" if ready else status.phase.value,
                f"phase {status.phase.value}: {first.reason}: {first.message}",
                warning=status.phase is Phase.DEGRADED,
            )
            if status.phase is Phase.DEGRADED:
                return  # that event names the cause already
        # Another cause while the phase stays (a hub whose volume bound, then crash-looping),
        # or a warning beside Ready (QueueWithoutWriter): an event under the cause's reason.
        old_cause = next((c for c in previous.conditions if c.type == "Degraded"), None)
        cause = next((c for c in status.conditions if c.type == "Degraded"), None)
        if cause is not None and cause.status == "True":
            known = old_cause is not None and old_cause.status == "True"
            if not known or (old_cause is not None and old_cause.reason != cause.reason):
                self.kube.event(body, cause.reason, cause.message, warning=True)

    def _write(self, entry: Tracked, status: WorkflowResourceStatus) -> None:
        """Patch .status when it changed, or when it was last written statusRefreshSeconds ago:
        lastUpdateTime is then never older than that while an operator runs."""
        doc = fit(status, self.settings.status_max_bytes)
        same = entry.written is not None and {
            k: v for k, v in doc.items() if k != "lastUpdateTime"
        } == {k: v for k, v in entry.written.items() if k != "lastUpdateTime"}
        entry.status = status
        fresh = time.monotonic() - entry.written_at < self.settings.status_refresh_seconds
        if same and fresh:
            return
        meta = entry.body["metadata"]
        try:
            self.kube.patch_status(meta["namespace"], meta["name"], doc)
        except ApiException as exc:
            if exc.status == 404:
                self.forget(meta["namespace"], meta["name"])
                return
            raise
        entry.written = doc
        entry.written_at = time.monotonic()


def _loop_pods(pods: list[dict[str, Any]], loop: str) -> list[dict[str, Any]]:
    """A loop's pods that exist and are not being deleted."""
    return [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get("ostinato.dev/loop") == loop
        and not p["metadata"].get("deletionTimestamp")
    ]
