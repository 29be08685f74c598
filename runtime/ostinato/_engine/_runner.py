"""One node inside a running loop: how it is called in its pool, its health and its counters."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from time import perf_counter_ns
from typing import Any

from .._model._nodes import BaseNode, NodeKind, is_async_callable
from .._model._plan import NodePlan
from .._model._ports import Submit
from .._model._spec import ErrorPolicy, OnFull, RetrySpec
from .._model._status import Durations, NodeHealth, NodeStatus, truncate

log = logging.getLogger("ostinato.loop")


def backoff(policy: RetrySpec, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): exponential, capped, jittered."""
    base = policy.initial_backoff_seconds * policy.multiplier ** (retry - 1)
    base = min(base, policy.max_backoff_seconds)
    return base * (1 + policy.jitter * random.random())


class NodeRunner:
    """Calls one node instance the way its pool wants and keeps its health and counters.

    ``inline`` nodes are plain sync calls on the loop's thread (the fast path); others are
    awaited through ``acall``: ``async def`` methods directly, sync methods of asyncio-pool loops
    through the loop's worker thread so the event loop stays free.

    ``call`` is the node's method itself, except during an iteration the engine samples for
    the duration histograms: then it is ``timed``, a wrapper that observes each attempt's
    duration in ``durations`` and marks its start and end (``started_ns``, ``ended_ns``).
    """

    __slots__ = (
        "_worker",
        "blocking",
        "call",
        "calls",
        "completions",
        "dropped",
        "durations",
        "ended_ns",
        "errors",
        "health",
        "in_flight",
        "inline",
        "is_async",
        "kind",
        "last_error",
        "max_in_flight",
        "name",
        "node",
        "on_error",
        "on_full",
        "plain",
        "plan",
        "reported",
        "retries",
        "retry",
        "slot_waiters",
        "started_ns",
        "submit",
        "submitted",
        "timed",
    )

    def __init__(
        self, plan: NodePlan, node: BaseNode[Any], *, offload: bool, worker: Executor
    ) -> None:
        self.plan = plan
        self.node = node
        self.name = plan.name
        self.kind = plan.kind
        self.blocking = plan.kind is NodeKind.BLOCKING
        spec = plan.spec
        self.retry = spec.retry
        self.on_error = spec.on_error
        self.max_in_flight = spec.max_in_flight
        self.on_full = spec.on_full
        self.call: Callable[..., Any] = getattr(
            node, "produce" if plan.kind is NodeKind.PRODUCER else "process"
        )
        self.is_async = is_async_callable(self.call)
        self.plain = self.call
        self.timed: Callable[..., Any] = self._timed_async if self.is_async else self._timed_sync
        self.durations = Durations()
        self.started_ns = self.ended_ns = 0
        self.inline = not self.is_async and not (offload and not node.run_inline)
        #: A non-blocking node that can start its side effect without a task of its own
        #: (see ``Submit``): the engine calls this instead of scheduling ``process``.
        self.submit: Submit | None = (
            node._submitter() if plan.kind is NodeKind.NON_BLOCKING else None
        )
        self._worker = worker
        self.health = NodeHealth.HEALTHY
        self.calls = self.errors = self.retries = self.in_flight = self.dropped = 0
        self.submitted = 0  # calls started through ``submit`` and not finished
        #: The one ``done`` of its submitted calls that need no data (see ``_dispatch``).
        self.completions: Any = None
        self.last_error: str | None = None
        #: The traceback of this failing episode has been logged (until a call succeeds).
        self.reported = False
        self.slot_waiters: deque[asyncio.Future[bool]] = deque()

    # -- calling -----------------------------------------------------------------------------

    def acall(self, *args: Any) -> Awaitable[Any]:
        """Awaitable call for non-inline nodes (async methods, or sync ones offloaded)."""
        if self.is_async:
            return self.call(*args)  # type: ignore[no-any-return]
        return asyncio.get_running_loop().run_in_executor(self._worker, self.call, *args)

    def _timed_sync(self, *args: Any) -> Any:
        self.started_ns = start = perf_counter_ns()
        try:
            return self.plain(*args)
        finally:
            self.ended_ns = end = perf_counter_ns()
            self.durations.observe(end - start)

    async def _timed_async(self, *args: Any) -> Any:
        self.started_ns = start = perf_counter_ns()
        try:
            return await self.plain(*args)
        finally:
            self.ended_ns = end = perf_counter_ns()
            self.durations.observe(end - start)

    async def hook(self, name: str, offload: bool) -> None:
        """Run setup or teardown the way the pool runs the node's other methods."""
        fn = getattr(self.node, name)
        if is_async_callable(fn):
            await fn()
        elif offload and not self.node.run_inline:
            await asyncio.get_running_loop().run_in_executor(self._worker, fn)
        else:
            fn()

    # -- health ------------------------------------------------------------------------------

    def succeeded(self) -> None:
        self.calls += 1
        self.recovered()

    def recovered(self) -> None:
        """A call succeeded: back to healthy (logged when the node had been failing)."""
        if self.health is not NodeHealth.HEALTHY:
            if self.reported:
                self.node.logger.info("recovered after %d error(s)", self.errors)
                self.reported = False
            self.health = NodeHealth.HEALTHY

    def retrying(self, exc: BaseException, attempt: int) -> None:
        """A call failed and will be retried (counted here: the loop's thread only)."""
        self.retries += 1
        self.log_retry(exc, attempt)

    def log_retry(self, exc: BaseException, attempt: int) -> None:
        """Mark the node retrying and say so, once per attempt, without a traceback (the
        traceback comes once, if the retries run out)."""
        self.health = NodeHealth.RETRYING
        self.node.logger.warning(
            "attempt %d/%d failed, retrying: %s: %s",
            attempt,
            self.retry.max_attempts,
            type(exc).__name__,
            exc,
        )

    def failed(self, exc: BaseException) -> ErrorPolicy:
        """Record a call that failed after its retries; log the traceback once per episode."""
        self.calls += 1
        self.errors += 1
        self.last_error = truncate(f"{type(exc).__name__}: {exc}")
        self.health = NodeHealth.FAILING
        # Once per episode (until a call succeeds): a retried call was 'retrying' in between,
        # so the health alone cannot tell a new episode from the next failure of this one.
        if not self.reported:
            self.reported = True
            self.node.logger.error(
                "failed (onError=%s): %s", self.on_error.value, self.last_error, exc_info=exc
            )
        else:
            self.node.logger.debug("still failing (%d errors): %s", self.errors, self.last_error)
        return self.on_error

    # -- non-blocking slots ------------------------------------------------------------------

    def full(self) -> bool:
        return self.in_flight >= self.max_in_flight

    def drops(self) -> bool:
        return self.on_full is OnFull.DROP

    def release(self) -> None:
        self.in_flight -= 1
        while self.slot_waiters:  # the loop waits for a free slot (onFull: block)
            waiter = self.slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                break

    def status(self) -> NodeStatus:
        return NodeStatus(
            name=self.name,
            kind=self.kind.value,
            health=self.health,
            calls=self.calls,
            errors=self.errors,
            retries=self.retries,
            in_flight=self.in_flight,
            dropped=self.dropped,
            last_error=self.last_error,
            counters=dict(self.node.context.counters),
            duration=self.durations.snapshot(),
        )
