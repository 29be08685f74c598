"""Handles the orchestrator keeps per loop: the same controls for thread, asyncio and process."""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .._engine._eventloop import new_event_loop
from .._engine._loop import LoopManager
from .._messaging._client import HubClient
from .._model._plan import LoopPlan
from .._model._spec import DesiredState, Pool
from .._model._status import LoopState, LoopStatus, replica_key
from ._replica import attach

__all__ = ["EventLoopThread", "InProcessLoop", "LoopHandle"]

log = logging.getLogger("ostinato.orchestrator")


class LoopHandle(abc.ABC):
    """One loop as the orchestrator sees it, wherever it runs."""

    def __init__(self, plan: LoopPlan, replica: int = 0) -> None:
        self.plan = plan
        self.name = plan.name
        self.replica = replica
        #: How the orchestrator names this handle: the loop's name, '-N' for replica N > 0.
        self.key = replica_key(plan.name, replica)
        self.pool = plan.spec.pool

    @abc.abstractmethod
    def start(self) -> None: ...
    @abc.abstractmethod
    def set_desired(self, state: DesiredState) -> None:
        """Ask the loop to run, pause or stop from its next iteration boundary (does not
        wait); a loop asked to stop takes no further request."""

    def pause(self) -> None:
        """Ask the loop to pause at its next iteration boundary."""
        self.set_desired(DesiredState.PAUSED)

    def resume(self) -> None:
        self.set_desired(DesiredState.RUNNING)

    def stop(self) -> None:
        """Ask the loop to finish its iteration, drain, tear down and stop (does not wait)."""
        self.set_desired(DesiredState.STOPPED)

    @abc.abstractmethod
    def status(self) -> LoopStatus: ...
    @abc.abstractmethod
    def wait_for(self, predicate: Callable[[LoopStatus], bool], timeout: float) -> bool:
        """Block until ``predicate(status)`` holds; False after ``timeout`` seconds."""

    @property
    def state(self) -> LoopState:
        return self.status().state

    @property
    @abc.abstractmethod
    def done(self) -> bool:
        """True once the loop has ended for good (stopped, or failed and not restarted)."""

    def wait_for_state(self, *states: LoopState, timeout: float) -> bool:
        return self.wait_for(lambda s: s.state in states, timeout)

    def join(self, timeout: float) -> bool:
        return self.wait_for(lambda _s: self.done, timeout)


class EventLoopThread:
    """An asyncio event loop running in a thread of its own, shared by the loops that name it;
    its timers keep time to the microsecond (see ``_eventloop``)."""

    def __init__(self, name: str) -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"ostinato-asyncio-{name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, timeout: float = 5.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


class InProcessLoop(LoopHandle):
    """A loop in this process: on a thread of its own, or as a task on an asyncio event loop."""

    def __init__(
        self,
        plan: LoopPlan,
        *,
        workflow: str,
        max_iterations: int | None,
        event_loop: EventLoopThread | None = None,
        replica: int = 0,
        hub: HubClient | None = None,
    ) -> None:
        super().__init__(plan, replica)
        self.hub = hub
        self.manager = LoopManager(
            plan, workflow=workflow, max_iterations=max_iterations, hub=hub, replica=replica
        )
        if hub is not None:
            attach(self.manager, hub)
        self._event_loop = event_loop
        self._finished = threading.Event()
        if (event_loop is None) != (plan.spec.pool is not Pool.ASYNCIO):
            raise ValueError("an asyncio loop needs an event loop thread; others must not get one")

    def start(self) -> None:
        if self.hub is not None:
            self.hub.start()
        if self._event_loop is None:
            threading.Thread(
                target=self._run_thread, name=f"ostinato-loop-{self.key}", daemon=True
            ).start()
        else:
            self._event_loop.submit(self.manager.run()).add_done_callback(self._ended)

    def _run_thread(self) -> None:
        try:
            self.manager.run_sync()
        except Exception:
            pass  # the manager has logged it and reports state error
        finally:
            self._mark_finished()

    def _ended(self, fut: Future[Any]) -> None:
        self._mark_finished()

    def _mark_finished(self) -> None:
        try:
            if self.hub is not None:
                self.hub.close()  # the hub gives what this loop had not acknowledged to others
        finally:
            self._finished.set()
        self.manager._notify()

    def set_desired(self, state: DesiredState) -> None:
        self.manager.set_desired(state)

    def status(self) -> LoopStatus:
        return self.manager.status()

    @property
    def state(self) -> LoopState:
        return self.manager.state

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait_for(self, predicate: Callable[[LoopStatus], bool], timeout: float) -> bool:
        return self.manager.wait_for(lambda m: predicate(m.status()), timeout)

    def wait_for_state(self, *states: LoopState, timeout: float) -> bool:
        return self.manager.wait_for_state(*states, timeout=timeout)

    def join(self, timeout: float) -> bool:
        # Not manager.wait_for: a watcher makes the loop notify as it iterates, which costs a
        # fast loop its GIL for nothing when all we want is the end.
        return self._finished.wait(timeout)
