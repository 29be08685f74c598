"""WorkflowOrchestrator: loads a workflow, builds its loops, runs each in its pool, controls it."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from .._messaging._client import HubClient
from .._messaging._hub import Hub
from .._model._classes import importable_folder
from .._model._plan import LoopPlan, WorkflowPlan, dump_document, load_workflow
from .._model._spec import DesiredState, Pool
from .._model._status import LoopState, LoopStatus, WorkflowStatus, replica_key
from ._autoscaler import Autoscaler
from ._handles import EventLoopThread, InProcessLoop, LoopHandle
from ._process import ProcessLoop
from ._replica import replica_identity

__all__ = ["WorkflowOrchestrator"]

log = logging.getLogger("ostinato.orchestrator")


class WorkflowOrchestrator:
    """Runs a whole workflow: every loop in the pool it names, under one set of controls.

    ``workflow`` is a file path, a document mapping or a checked :class:`WorkflowPlan`.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        workflow: str | Path | Mapping[str, Any] | WorkflowPlan,
        *,
        max_iterations: int | None = None,
        log_format: str = "text",
        state_dir: str | Path | None = None,
    ) -> None:
        if isinstance(workflow, str | Path):
            importable_folder(workflow)
        self.plan = workflow if isinstance(workflow, WorkflowPlan) else load_workflow(workflow)
        self.name = self.plan.name
        self._max_iterations = max_iterations
        self._log_format = log_format
        self._state_dir = state_dir
        self.hub: Hub | None = None
        #: What was last asked of each loop (the spec, set_state, pause, resume, stop), by name:
        #: reported beside what its replicas do (status) and answered to POST /control.
        self._desired = {
            lp.name: DesiredState.combine(self.plan.workflow.spec.state, lp.spec.state)
            for lp in self.plan.loops
        }
        self._event_loops: dict[str, EventLoopThread] = {}
        #: Every replica by key. Replaced, never changed in place (the autoscaler adds and
        #: removes replicas while other threads read it).
        self.loops: dict[str, LoopHandle] = {}
        self._autoscaler: Autoscaler | None = None
        #: Loops not started because their desired state (spec) is stopped, by name.
        self._held: dict[str, LoopPlan] = {}
        self._document = ""
        self._started = False

    def __enter__(self) -> WorkflowOrchestrator:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the hub, then every loop replica in its pool (returns at once)."""
        if self._started:
            raise RuntimeError(f"workflow {self.name!r} already started")
        self._started = True
        self.hub = Hub.for_workflow(self.plan, state_dir=self._state_dir)
        self._document = dump_document(self.plan.workflow)
        started: list[LoopHandle] = []
        for plan in self.plan.loops:
            desired = self._desired[plan.name]
            if desired is DesiredState.STOPPED:
                self._held[plan.name] = plan
                continue
            started += self._add(plan, paused=desired is DesiredState.PAUSED)
        log.info(
            "workflow %r: starting %d loop(s): %s%s",
            self.name,
            len(self.loops),
            ", ".join(f"{key}[{h.pool.value}]" for key, h in self.loops.items()),
            f"; not starting {', '.join(self._held)} (state: stopped)" if self._held else "",
        )
        for handle in started:
            handle.start()
        self._autoscaler = Autoscaler(self.plan.loops, self.hub.queue_statuses, self)
        self._autoscaler.start()

    def _add(self, plan: LoopPlan, *, paused: bool) -> list[LoopHandle]:
        """Build (not start) every replica of a loop; paused ones wait at their first boundary."""
        handles = []
        for replica in range(plan.spec.initial_replicas):
            handle = self._handle(plan, replica, self._document)
            if paused:
                handle.pause()
            self.loops = {**self.loops, handle.key: handle}
            handles.append(handle)
        return handles

    # -- what the autoscaler asks of the orchestrator (_autoscaler.ScaleHost) ----------------

    def replicas_of(self, loop: str) -> list[LoopHandle]:
        return [h for h in self.loops.values() if h.name == loop]

    def desired_state(self, loop: str) -> DesiredState:
        return self._desired[loop]

    def add_replica(self, plan: LoopPlan, replica: int) -> LoopHandle:
        handle = self._handle(plan, replica, self._document)
        if self._desired[plan.name] is DesiredState.PAUSED:
            handle.pause()
        self.loops = {**self.loops, handle.key: handle}
        handle.start()
        return handle

    def forget(self, handle: LoopHandle) -> None:
        self.loops = {k: h for k, h in self.loops.items() if h is not handle}
        event_loop = self._event_loops.pop(f"loop:{handle.name}:{handle.replica}", None)
        if event_loop is not None:  # a retired asyncio replica's own event loop
            event_loop.close()

    def _handle(self, plan: LoopPlan, replica: int, document: str) -> LoopHandle:
        assert self.hub is not None
        if plan.spec.pool is Pool.PROCESS:
            return ProcessLoop(
                plan,
                server=self.hub,
                document=document,
                max_iterations=self._max_iterations,
                log_format=self._log_format,
                replica=replica,
            )
        event_loop = None
        if plan.spec.pool is Pool.ASYNCIO:
            key = plan.spec.event_loop or f"loop:{plan.name}:{replica}"
            if key not in self._event_loops:
                self._event_loops[key] = EventLoopThread(plan.spec.event_loop or plan.name)
            event_loop = self._event_loops[key]
        client = None
        if plan.reads or plan.writes:
            client = HubClient(
                self.hub.inproc,
                replica_identity(plan.name, replica),
                loop=plan.name,
                ctx=self.hub.ctx,
                heartbeat=plan.spec.heartbeat_seconds,
            )
        return InProcessLoop(
            plan,
            workflow=self.name,
            max_iterations=self._max_iterations,
            event_loop=event_loop,
            replica=replica,
            hub=client,
        )

    def loop(self, name: str) -> LoopHandle:
        try:
            return self.loops[name]
        except KeyError:
            raise KeyError(f"workflow {self.name!r} has no loop {name!r}") from None

    def replicas(self, name: str) -> list[LoopHandle]:
        """Every replica of loop ``name`` (none for an autoscaled loop scaled to zero)."""
        found = [h for h in self.loops.values() if h.name == name]
        if not found and name not in self._desired:
            raise KeyError(f"workflow {self.name!r} has no loop {name!r}")
        return found

    def _targets(self, loop: str | None) -> list[LoopHandle]:
        return self.replicas(loop) if loop is not None else list(self.loops.values())

    def set_state(self, loop: str | None, state: DesiredState) -> dict[str, str]:
        """Run, pause or stop one loop (or all) at its next iteration boundary; a loop held
        back by ``state: stopped`` in the spec starts now when asked to run or pause. Returns
        the state each loop was last asked for (also each replica's ``desired_state`` in
        :meth:`status`), as ``ostinato hub`` does. KeyError for an unknown loop."""
        names = [lp.name for lp in self.plan.loops] if loop is None else [loop]
        if loop is not None and loop not in self._desired:
            raise KeyError(f"workflow {self.name!r} has no loop {loop!r}")
        for name in names:
            self._desired[name] = state
            held = self._held.get(name)
            if held is not None and state is not DesiredState.STOPPED:
                del self._held[name]
                for handle in self._add(held, paused=state is DesiredState.PAUSED):
                    handle.start()
                continue
            for handle in self.loops.values():
                if handle.name == name:
                    handle.set_desired(state)
        log.info("desired state of %s: %s", loop or "every loop", state.value)
        return self.desired()

    def desired(self) -> dict[str, str]:
        """The state each loop was last asked for, by name."""
        return {name: state.value for name, state in self._desired.items()}

    def not_ready(self) -> str | None:
        """Why the workflow is not ready (for /readyz), or None when it is."""
        if not self._started:
            return "the workflow has not started"
        hub = self.hub
        if hub is None or not hub.alive:
            return "the messaging hub is not running"
        pending = [
            (replica_key(lp.name, lp.replica), lp.reason)
            for lp in self.status().loops
            if lp.state is LoopState.PENDING
        ]
        if pending:
            return "loop(s) not started yet: " + ", ".join(
                f"{key} ({why})" if why else key for key, why in pending
            )
        return None

    def pause(self, loop: str | None = None) -> None:
        """Pause one loop, or all; each takes effect at its next iteration boundary."""
        self._ask(loop, DesiredState.PAUSED)

    def resume(self, loop: str | None = None) -> None:
        self._ask(loop, DesiredState.RUNNING)

    def _ask(self, loop: str | None, state: DesiredState) -> None:
        """Ask the loops that were started (not those the spec holds back, unlike
        :meth:`set_state`) and keep what was asked."""
        targets = self._targets(loop)
        for handle in targets:
            self._desired[handle.name] = state
            handle.set_desired(state)

    def abort(self) -> None:
        """Kill every process loop's child at once (no drain, no restart); in-process loops
        end with the process. For an exit that must not wait: a second interrupt."""
        for handle in list(self.loops.values()):
            if isinstance(handle, ProcessLoop):
                handle.abort()

    def stop(self, timeout: float | None = None) -> WorkflowStatus:
        """Stop every loop gracefully and wait for them; returns the final status.

        ``timeout`` defaults to the largest drain timeout plus a margin for teardown.
        """
        if timeout is None:
            drains = [p.spec.drain_timeout_seconds for p in self.plan.loops]
            timeout = max(drains, default=0.0) + 30.0
        if self._autoscaler is not None:  # no replica added or retired from here on
            self._autoscaler.close()
        for handle in self.loops.values():
            self._desired[handle.name] = DesiredState.STOPPED
            handle.stop()
        deadline = time.monotonic() + timeout
        for handle in self.loops.values():
            if not handle.join(max(deadline - time.monotonic(), 0.0)):
                log.error("loop %r did not stop within %.0fs", handle.name, timeout)
        status = self.status()
        for event_loop in self._event_loops.values():
            event_loop.close()
        self._event_loops.clear()
        if self.hub is not None:
            self.hub.close()
            self.hub = None
        return status

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every loop has ended by itself (max iterations, exhausted producer, a
        stopLoop policy); False after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for handle in self.loops.values():
            while not handle.done:
                remaining = 3600.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0 or (not handle.join(remaining) and deadline is not None):
                    return False
        return True

    @property
    def done(self) -> bool:
        """Every replica has ended by itself; an autoscaled loop never has, while it may
        scale up again (it is not stopped and none of its replicas finished)."""
        if not all(h.done for h in self.loops.values()):
            return False
        return not any(
            lp.spec.autoscale is not None
            and self._desired[lp.name] is not DesiredState.STOPPED
            and not any(h.state is LoopState.FINISHED for h in self.replicas_of(lp.name))
            for lp in self.plan.loops
        )

    def status(self) -> WorkflowStatus:
        queues = self.hub.queue_statuses() if self.hub is not None else []
        held = [
            LoopStatus(
                name=plan.name,
                replica=replica,
                pool=plan.spec.pool.value,
                state=LoopState.STOPPED,
                desired_state=DesiredState.STOPPED,
                reason="not started: its desired state is stopped",
            )
            for plan in self._held.values()
            for replica in range(plan.spec.initial_replicas)
        ]
        # What was asked of each loop beside what its replicas do, as ``ostinato hub`` reports.
        desired = dict(self._desired)
        loops = [
            h.status().model_copy(update={"desired_state": desired[h.name]})
            for h in self.loops.values()
        ]
        scaled = self._autoscaler.status() if self._autoscaler is not None else []
        return WorkflowStatus(
            workflow=self.name, loops=loops + held, queues=queues, autoscale=scaled
        )

    def states(self) -> dict[str, LoopState]:
        return {name: h.state for name, h in self.loops.items()}
