"""What a hub running alone knows of its loops: their heartbeats, and the states users ask for.

`ostinato hub` serves loops that run elsewhere (other processes, hosts, pods). Each loop replica
sends its :class:`LoopStatus` with every heartbeat; :class:`RemoteLoops` keeps the last one per
``(loop, replica)`` and builds the whole workflow's status from them, the way the orchestrator
does for loops it runs itself. It also holds the desired state of every loop (``spec.state`` and
``spec.loops[].state`` at start, then ``POST /control``), reports it as each replica's
``desired_state`` beside the state the replica reports, and sees that every connected replica,
and every replica that connects later, follows it at its next iteration boundary: the same
``POST /control`` semantics as a local run's (``WorkflowOrchestrator.set_state``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .._messaging._wire import Kind
from .._model._spec import DesiredState
from .._model._status import (
    AutoscaleStatus,
    LoopState,
    LoopStatus,
    QueueStatus,
    WorkflowStatus,
    lost_reason,
)

if TYPE_CHECKING:
    from .._messaging._hub import Hub
    from .._model._plan import WorkflowPlan

__all__ = ["RemoteLoops"]

log = logging.getLogger("ostinato.hub.loops")


@dataclass
class _Replica:
    identity: bytes
    status: LoopStatus
    heard: float  # time.monotonic() of the last report
    final: bool  # the loop has ended and said so


class RemoteLoops:
    """Loop replicas known to a hub from their heartbeats (thread-safe)."""

    def __init__(self, plan: WorkflowPlan, hub: Hub, *, lost_after: float) -> None:
        self.plan = plan
        self.hub = hub
        self.lost_after = lost_after
        self._lock = threading.Lock()
        self._replicas: dict[tuple[str, int], _Replica] = {}
        self._desired = {
            lp.name: DesiredState.combine(plan.workflow.spec.state, lp.spec.state)
            for lp in plan.loops
        }
        self._counts = {lp.name: lp.spec.initial_replicas for lp in plan.loops}
        self._pools = {lp.name: lp.spec.pool.value for lp in plan.loops}
        self._warned: set[tuple[str, int]] = set()
        hub.fallback = self.receive

    # -- the hub thread ------------------------------------------------------------------------

    def receive(self, identity: bytes, msg: dict[str, Any]) -> None:
        """A message from a peer without a handler: heartbeats with status are kept."""
        if msg.get("t") != Kind.STATUS:
            return
        try:
            status = LoopStatus.model_validate(msg["status"])
        except (KeyError, ValidationError) as exc:
            log.warning("status from %r not understood: %s", identity[:64], exc)
            return
        key = (status.name, status.replica)
        count = self._counts.get(status.name)
        if count is None or status.replica < 0:
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "a loop %r replica %d reports to this hub, but the workflow has no such "
                    "loop: ignored",
                    status.name,
                    status.replica,
                )
            return
        if status.replica >= count and key not in self._warned:
            # A loop scaled up after this hub read its spec: replicas are whoever reports (the
            # hub is not restarted, and its queues not lost, for a change of replicas).
            self._warned.add(key)
            log.info(
                "loop %s replica %d connected beyond the %d replica(s) of the spec this hub "
                "started with: the loop was scaled up",
                status.name,
                status.replica,
                count,
            )
        with self._lock:
            known = self._replicas.get(key)
            if known is not None and known.identity != identity:
                log.info("loop %s replica %d reconnected", status.name, status.replica)
            elif known is None:
                log.info("loop %s replica %d connected", status.name, status.replica)
            self._replicas[key] = _Replica(
                identity, status, time.monotonic(), bool(msg.get("final"))
            )
            desired = self._desired[status.name]
        if msg.get("awaiting"):
            # A replica that (re)started waits at its first boundary for our word: resume
            # included, which is safe here as nothing of its own (a breaker) paused it yet.
            self._tell(identity, desired)
            return
        self._enforce(identity, status, desired)

    def _enforce(self, identity: bytes, status: LoopStatus, desired: DesiredState) -> None:
        """Level-triggered for pause and stop: a replica that runs although it should not is
        told again (it may have restarted). Resume is only sent when asked for, so that a
        loop paused by its own error policy or circuit breaker is not resumed behind its back."""
        state = status.state
        if (desired is DesiredState.PAUSED and state in (LoopState.PENDING, LoopState.RUNNING)) or (
            desired is DesiredState.STOPPED
            and state not in (LoopState.STOPPING, LoopState.STOPPED, LoopState.FINISHED)
        ):
            self._tell(identity, desired)

    def _tell(self, identity: bytes, desired: DesiredState) -> None:
        self.hub.send(identity, Kind.CONTROL, state=desired.value)

    # -- any thread ----------------------------------------------------------------------------

    def desired(self) -> dict[str, str]:
        with self._lock:
            return {name: state.value for name, state in self._desired.items()}

    def set_state(self, loop: str | None, state: DesiredState) -> dict[str, str]:
        """Ask one loop (or every loop) to run, pause or stop; returns every desired state.

        KeyError naming the loop when the workflow has none of that name.
        """
        if loop is not None and loop not in self._desired:
            raise KeyError(f"workflow {self.plan.name!r} has no loop {loop!r}")
        names = [loop] if loop is not None else list(self._desired)
        with self._lock:
            for name in names:
                self._desired[name] = state
            targets = [r.identity for (name, _), r in self._replicas.items() if name in names]
        for identity in targets:
            self._tell(identity, state)
        log.info("desired state of %s: %s", loop or "every loop", state.value)
        return self.desired()

    def status(self) -> WorkflowStatus:
        """Every replica the workflow declares: last reported, pending, or lost."""
        now = time.monotonic()
        loops: list[LoopStatus] = []
        with self._lock:
            replicas = dict(self._replicas)
            desired = dict(self._desired)
        for name, count in self._counts.items():
            reported = [index for (loop, index) in replicas if loop == name]
            for replica in range(max(count, max(reported, default=-1) + 1)):
                known = replicas.get((name, replica))
                if known is None:
                    loops.append(
                        LoopStatus(
                            name=name,
                            replica=replica,
                            pool=self._pools[name],
                            state=LoopState.PENDING,
                            desired_state=desired[name],
                            reason="not connected to the hub yet",
                        )
                    )
                    continue
                # What was asked here, beside what the replica reports it does (its own report
                # says a new desired state only with its next heartbeat or state change).
                update: dict[str, Any] = {"desired_state": desired[name]}
                silent = now - known.heard
                if not known.final and silent > self.lost_after:
                    update["state"] = LoopState.ERROR
                    update["reason"] = lost_reason(silent)
                loops.append(known.status.model_copy(update=update))
        queues = self.hub.queue_statuses()
        return WorkflowStatus(
            workflow=self.plan.name,
            loops=loops,
            queues=queues,
            autoscale=self._autoscaled(loops, queues),
        )

    def _autoscaled(
        self, loops: list[LoopStatus], queues: list[QueueStatus]
    ) -> list[AutoscaleStatus]:
        """Autoscaled loops as a hub sees them: the replicas connected and not ended (who
        decides how many there should be, the operator, reports that itself)."""
        backlog = {q.name: q.depth + sum(q.in_flight) for q in queues}
        out = []
        for plan in self.plan.loops:
            read = plan.spec.read_queue
            if plan.spec.autoscale is None or read is None:
                continue
            live = [
                lp
                for lp in loops
                if lp.name == plan.name
                and lp.state in (LoopState.RUNNING, LoopState.PAUSED, LoopState.STOPPING)
            ]
            out.append(
                AutoscaleStatus(
                    loop=plan.name,
                    desired_replicas=None,
                    current_replicas=len(live),
                    backlog=backlog.get(read, 0),
                )
            )
        return out

    def not_ready(self) -> str | None:
        """A hub is ready when it serves; its loops' readiness is theirs to report."""
        return None if self.hub.alive else "the messaging hub is not running"
