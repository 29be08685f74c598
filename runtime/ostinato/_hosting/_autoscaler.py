"""Autoscaling in `ostinato run`: samples the hub's queues and adds or retires loop replicas.

The decision is the model's (:func:`decide`, the operator's too); this module only acts on it
in the orchestrator's pools. A replica is retired without losing anything: paused first (its
queue reader gives back what it prefetched, and the pause waits for the hub's word), so that
its iteration in progress finishes and it takes no more; then stopped, which drains its
non-blocking work; then forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._model._autoscale import ScaleDecision, ScaleState, decide, sample_of
from .._model._plan import LoopPlan
from .._model._spec import AutoscaleSpec, DesiredState
from .._model._status import AutoscaleStatus, LoopState, QueueStatus
from ._handles import LoopHandle

__all__ = ["Autoscaler", "ScaleHost"]

log = logging.getLogger("ostinato.autoscale")

#: How long a retiring replica may take to reach its pause (its iteration in progress finishing)
#: before it is stopped anyway; either way nothing it acknowledged is lost.
PAUSE_TIMEOUT_SECONDS = 60.0
_ENDED = (LoopState.PAUSED, LoopState.STOPPED, LoopState.FINISHED, LoopState.ERROR)


class ScaleHost(Protocol):
    """What the autoscaler needs of the orchestrator."""

    def replicas_of(self, loop: str) -> list[LoopHandle]:
        """Every replica of the loop it holds now, retiring ones included."""

    def desired_state(self, loop: str) -> DesiredState: ...

    def add_replica(self, plan: LoopPlan, replica: int) -> LoopHandle:
        """Build and start replica ``replica`` of the loop."""

    def forget(self, handle: LoopHandle) -> None:
        """Drop a replica that has stopped."""


@dataclass
class _Scaled:
    plan: LoopPlan
    spec: AutoscaleSpec
    queue: str
    state: ScaleState | None = None
    last: ScaleDecision | None = None
    next_at: float = 0.0


class Autoscaler:
    """A thread that keeps each autoscaled loop at the replicas :func:`decide` asks for."""

    def __init__(
        self,
        plans: Sequence[LoopPlan],
        queues: Callable[[], list[QueueStatus]],
        host: ScaleHost,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loops = []
        for plan in plans:
            queue = plan.spec.read_queue
            if plan.spec.autoscale is not None and queue is not None:
                self._loops.append(_Scaled(plan, plan.spec.autoscale, queue))
        self._queues = queues
        self._host = host
        self._clock = clock
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._retiring: dict[str, LoopHandle] = {}
        self._retirements: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name="ostinato-autoscale", daemon=True)

    def __bool__(self) -> bool:
        return bool(self._loops)

    def start(self) -> None:
        if self._loops:
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop deciding, and wait for the retirements under way (so none is cut short)."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for thread in list(self._retirements):
            thread.join(max(deadline - time.monotonic(), 0.0))

    def status(self) -> list[AutoscaleStatus]:
        out = []
        for scaled in self._loops:
            last = scaled.last
            current = len(self._live(scaled.plan.name))
            out.append(
                AutoscaleStatus(
                    loop=scaled.plan.name,
                    desired_replicas=last.desired if last is not None else current,
                    current_replicas=current,
                    backlog=last.backlog if last is not None else 0,
                    reason=last.reason if last is not None else None,
                )
            )
        return out

    # -- the autoscaler's thread ---------------------------------------------------------------

    def _run(self) -> None:
        tick = min(s.spec.interval_seconds for s in self._loops)
        while not self._closing.is_set():
            try:
                self.step()
            except Exception:  # a bug here must not end autoscaling for the run
                log.exception("autoscaling failed; trying again")
            self._closing.wait(tick)

    def step(self) -> None:
        """One round: each loop whose interval has passed is sampled and scaled."""
        now = self._clock()
        due = [s for s in self._loops if now >= s.next_at]
        if not due:
            return
        queues = {q.name: q for q in self._queues()}
        for scaled in due:
            scaled.next_at = now + scaled.spec.interval_seconds
            queue = queues.get(scaled.queue)
            if queue is not None:
                self._scale(scaled, queue, now)

    def _live(self, loop: str) -> list[LoopHandle]:
        with self._lock:
            retiring = set(self._retiring)
        return [h for h in self._host.replicas_of(loop) if h.key not in retiring and not h.done]

    def _scale(self, scaled: _Scaled, queue: QueueStatus, now: float) -> None:
        name = scaled.plan.name
        wanted_state = self._host.desired_state(name)
        live = self._live(name)
        if wanted_state is DesiredState.STOPPED or any(
            h.state is LoopState.FINISHED for h in self._host.replicas_of(name)
        ):
            return  # stopped by request, or ended by itself: nothing to scale
        decision = decide(scaled.spec, sample_of(queue, now), len(live), scaled.state)
        scaled.state, scaled.last = decision.state, decision
        if decision.desired > len(live):
            taken = {h.replica for h in self._host.replicas_of(name)}
            free = (i for i in range(len(taken) + decision.desired) if i not in taken)
            added = [
                self._host.add_replica(scaled.plan, next(free))
                for _ in range(decision.desired - len(live))
            ]
            log.info(
                "loop %r scaled up to %d (%s): %s",
                name,
                decision.desired,
                ", ".join(h.key for h in added),
                decision.reason,
            )
        elif decision.desired < len(live):
            going = sorted(live, key=lambda h: h.replica)[decision.desired :]
            log.info(
                "loop %r scaled down to %d (retiring %s): %s",
                name,
                decision.desired,
                ", ".join(h.key for h in going),
                decision.reason,
            )
            for handle in going:
                self._retire(handle)

    def _retire(self, handle: LoopHandle) -> None:
        with self._lock:
            self._retiring[handle.key] = handle
        handle.pause()  # the reader gives back what it prefetched; the iteration finishes
        thread = threading.Thread(
            target=self._finish, args=(handle,), name=f"ostinato-retire-{handle.key}", daemon=True
        )
        self._retirements = [t for t in self._retirements if t.is_alive()] + [thread]
        thread.start()

    def _finish(self, handle: LoopHandle) -> None:
        try:
            if not handle.wait_for_state(*_ENDED, timeout=PAUSE_TIMEOUT_SECONDS):
                log.warning(
                    "replica %s did not pause within %gs; stopping it",
                    handle.key,
                    PAUSE_TIMEOUT_SECONDS,
                )
            handle.stop()  # drains its non-blocking work, then tears down
            drain = handle.plan.spec.drain_timeout_seconds
            if not handle.join(drain + 30.0):
                log.error("replica %s did not stop within %.0fs", handle.key, drain + 30.0)
                return  # kept, and reported as it is: stopped with the workflow at the end
            self._host.forget(handle)
        finally:
            with self._lock:
                self._retiring.pop(handle.key, None)
