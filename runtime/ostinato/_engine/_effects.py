"""Non-blocking side effects of a loop: starting each call (a task, a worker thread, or the
node's own submit), its retries and accounting, backpressure, and the drain at a stop (a part
of LoopManager, as a mixin)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

from .._model._nodes import NodeData
from .._model._plan import LoopPlan
from .._model._ports import Settler
from .._model._spec import DesiredState, ErrorPolicy
from .._model._status import LoopState, NodeHealth
from ._runner import NodeRunner, backoff

__all__ = ["SideEffects", "resolve"]

_HEALTHY, _RUNNING = NodeHealth.HEALTHY, LoopState.RUNNING

#: What a sync side-effect call reports back: its last error, retries, attempt durations (ns).
_EffectResult = tuple[Exception | None, int, list[int]]


class SideEffects:
    """LoopManager's non-blocking calls, from dispatch to drain."""

    if TYPE_CHECKING:  # LoopManager's, set in its __init__ and run()
        plan: LoopPlan
        log: logging.Logger
        histograms: bool
        _desired: DesiredState
        _state: LoopState
        _wakers: set[asyncio.Future[bool]]
        _chain: tuple[NodeRunner, ...]
        _pending: int
        _submits: int
        _submit_epoch: int
        _until_sample: int
        _tasks: set[asyncio.Task[None]]
        _drain_waiter: asyncio.Future[None] | None
        _drained: int
        _abandoned: int
        _stop_signal: threading.Event
        _effects: ThreadPoolExecutor

        def _on_error(self, r: NodeRunner, policy: ErrorPolicy) -> None: ...

        async def _sleep(self, delay: float, interrupted: Callable[[], bool]) -> bool: ...

    async def _wait_slot(self, r: NodeRunner) -> bool:
        """Wait for a free slot of a full non-blocking node (onFull: block).

        Backpressure holds the iteration, and so a pause, for as long as it takes. A stop
        waits at most the drain timeout; then the call is abandoned (counted) and the
        iteration finishes, so a hung side effect can never hold a stop forever.
        """
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while r.in_flight >= r.max_in_flight:
            timer = None
            waiter: asyncio.Future[bool] = loop.create_future()
            if self._desired is DesiredState.STOPPED:
                if deadline is None:
                    deadline = loop.time() + self.plan.spec.drain_timeout_seconds
                if loop.time() >= deadline:
                    self._abandoned += 1
                    r.node.logger.warning("stopping: call abandoned, no free slot in time")
                    return False
                timer = loop.call_later(deadline - loop.time(), resolve, waiter, True)
            r.slot_waiters.append(waiter)
            self._wakers.add(waiter)
            try:
                await waiter
            finally:
                self._wakers.discard(waiter)
                if timer is not None:
                    timer.cancel()
        return True

    def _dispatch(self, r: NodeRunner, data: NodeData) -> None:
        r.in_flight += 1
        self._pending += 1
        if r.submit is not None:
            r.submitted += 1
            self._submits += 1
            epoch = self._submit_epoch
            done: Callable[[BaseException | None], None]
            if self.histograms and self._until_sample <= 0:
                # Timed in the iterations the sampler times (_sample), as blocking calls are.
                done = partial(self._submitted, r, data, epoch, time.perf_counter_ns())
            elif r.retry.max_attempts > 1:  # a retry calls the node again with data
                done = partial(self._submitted, r, data, epoch, 0)
            else:
                completions = r.completions
                if completions is None or completions.epoch != epoch:
                    completions = r.completions = _Completions(self, r, epoch)
                done = completions
            try:
                r.submit(data, done)
            except Exception as exc:
                done(exc)
        elif r.is_async:
            task = asyncio.get_running_loop().create_task(self._effect_async(r, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            fut = asyncio.get_running_loop().run_in_executor(
                self._effects, self._effect_sync, r, data
            )
            fut.add_done_callback(partial(self._effect_done, r))

    def _effect_sync(self, r: NodeRunner, data: NodeData) -> _EffectResult:
        """Runs in a side-effect thread: the call and its retries, each attempt timed (a
        thread hop costs far more than the timing). Accounting is left to the loop's thread
        (``_effect_done``) so counters and histograms have a single writer."""
        attempt = 1
        took: list[int] = []
        clock = time.perf_counter_ns if self.histograms else None
        while True:
            start = clock() if clock else 0
            try:
                r.call(data)
            except Exception as exc:
                if clock:
                    took.append(clock() - start)
                if attempt >= r.retry.max_attempts or self._stop_signal.is_set():
                    return exc, attempt - 1, took
                r.log_retry(exc, attempt)
                if self._stop_signal.wait(backoff(r.retry, attempt)):
                    return exc, attempt - 1, took
                attempt += 1
            else:
                if clock:
                    took.append(clock() - start)
                return None, attempt - 1, took

    def _submitted(
        self,
        r: NodeRunner,
        data: NodeData | None,
        epoch: int,
        start: int,
        error: BaseException | None,
    ) -> None:
        """A submitted call (``NodeRunner.submit``) has finished: its accounting, or its
        retries as a task of their own (rare: a failure)."""
        if epoch != self._submit_epoch:  # settled already, when the loop began to stop
            return
        r.submitted -= 1
        self._submits -= 1
        if start:
            r.durations.observe(time.perf_counter_ns() - start)
        if error is None:
            self._succeeded(r, 1)
        elif not isinstance(error, Exception):  # cancelled: neither done nor failed
            self._abandoned += 1
            self._account(r, None, 0, abandoned=True)
        elif (
            r.retry.max_attempts > 1
            and data is not None
            and self._desired is not DesiredState.STOPPED
        ):
            task = asyncio.get_running_loop().create_task(self._effect_async(r, data, error))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._account(r, error, 0)

    def _submitted_many(self, r: NodeRunner, epoch: int, n: int) -> None:
        """``n`` submitted calls of ``r`` without data or timing have succeeded (a run of
        queue puts the hub acknowledged): ``_submitted`` n times, in one go."""
        if epoch != self._submit_epoch:  # settled already, when the loop began to stop
            return
        r.submitted -= n
        self._submits -= n
        self._succeeded(r, n)

    def _succeeded(self, r: NodeRunner, n: int) -> None:
        """``n`` submitted calls of ``r`` succeeded: ``_account``'s success path, minus its
        branches and calls (it runs once per queue put)."""
        r.calls += n
        if r.health is not _HEALTHY:
            r.recovered()
        if r.slot_waiters or self._state is not _RUNNING:
            for _ in range(n):
                self._release(r, drained=True)
        else:  # _release's common case (no wait for a slot, no drain), inline
            r.in_flight -= n
            self._pending -= n

    def _settle_submitted(self) -> None:
        """The loop is asked to stop: submitted calls still running count as done now, as a
        stop ends any other wait of a node for a reply (a queue put is with the hub by then,
        just not acknowledged); their completions, when they come, are ignored."""
        if not any(r.submitted for r in self._chain):
            return
        self._submit_epoch += 1
        for r in self._chain:
            if r.submitted:
                r.node.logger.warning(
                    "stopping before %d call(s) had finished (queue puts: they wait in the hub)",
                    r.submitted,
                )
                for _ in range(r.submitted):
                    self._account(r, None, 0)
                self._submits -= r.submitted
                r.submitted = 0

    async def _effect_async(
        self, r: NodeRunner, data: NodeData, failed: Exception | None = None
    ) -> None:
        """A non-blocking async call and its retries; ``failed``: the first attempt was a
        submitted call that failed with it, so this begins with the first retry."""
        attempt = 1
        error: Exception | None = failed
        observe = r.durations.observe if self.histograms else None
        if failed is not None:
            r.log_retry(failed, attempt)
            if not await self._sleep(
                backoff(r.retry, attempt), lambda: self._desired is DesiredState.STOPPED
            ):
                self._account(r, failed, 0)
                return
            attempt += 1
        while True:
            start = time.perf_counter_ns()
            try:
                await r.call(data)
            except Exception as exc:
                error = exc
            else:
                error = None
            if observe:
                observe(time.perf_counter_ns() - start)
            if error is None or attempt >= r.retry.max_attempts:
                break
            r.log_retry(error, attempt)
            if not await self._sleep(
                backoff(r.retry, attempt), lambda: self._desired is DesiredState.STOPPED
            ):
                break
            attempt += 1
        self._account(r, error, attempt - 1)

    def _effect_done(self, r: NodeRunner, fut: asyncio.Future[_EffectResult]) -> None:
        if fut.cancelled():
            self._account(r, None, 0, abandoned=True)
            return
        error, retries, took = fut.result()
        for ns in took:
            r.durations.observe(ns)
        self._account(r, error, retries)

    def _account(
        self, r: NodeRunner, error: Exception | None, retries: int, abandoned: bool = False
    ) -> None:
        r.retries += retries
        if abandoned:
            pass
        elif error is None:
            r.succeeded()
        else:
            self._on_error(r, r.failed(error))
        self._release(r, drained=not abandoned)

    def _release(self, r: NodeRunner, drained: bool) -> None:
        """A non-blocking call of ``r`` is over: its slot is free; the drain may be done."""
        if r.slot_waiters:
            r.release()
        else:  # no loop waits for a slot: release's first line
            r.in_flight -= 1
        self._pending -= 1
        if drained and self._state is LoopState.STOPPING:
            self._drained += 1
        if self._pending == 0 and self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def _drain(self, limit: float) -> None:
        if self._desired is DesiredState.STOPPED:  # else (the producer is done) wait for them
            self._settle_submitted()
        if self._pending:
            self.log.info("draining %d non-blocking call(s)", self._pending)
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drain_waiter), limit)
            except TimeoutError:
                self._abandoned += self._pending
                self.log.warning(
                    "drain timeout (%gs): abandoning %d non-blocking call(s)",
                    limit,
                    self._pending,
                )
                for task in list(self._tasks):
                    task.cancel()
                self._submit_epoch += 1  # and submitted calls' completions are ignored


class _Completions(Settler):
    """The ``done`` of a node's submitted calls that need neither their data (no retries)
    nor a start time (not timed): one object for all of them while the loop's submit epoch
    lasts, so a call costs no callback of its own and a run of them is settled in one call
    (``many``, a run of queue puts the hub acknowledged)."""

    __slots__ = ("effects", "epoch", "runner")

    def __init__(self, effects: SideEffects, runner: NodeRunner, epoch: int) -> None:
        self.effects = effects
        self.runner = runner
        self.epoch = epoch

    def __call__(self, error: BaseException | None) -> None:
        self.effects._submitted(self.runner, None, self.epoch, 0, error)

    def many(self, n: int, error: BaseException | None) -> None:
        if error is None:
            self.effects._submitted_many(self.runner, self.epoch, n)
            return
        for _ in range(n):
            self(error)


def resolve(fut: asyncio.Future[bool], value: bool) -> None:
    """Settle a waker with ``value`` unless it is settled already (a timer's callback)."""
    if not fut.done():
        fut.set_result(value)
