"""The loop engine: LoopManager runs one loop's iterations under docs/concepts.md in any pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._model._nodes import NodeContext, NodeData, ProducerExhausted, new_trace_id
from .._model._plan import LoopPlan, NodePlan
from .._model._spec import DesiredState, ErrorPolicy, Pool
from .._model._status import (
    Durations,
    LoopState,
    LoopStatus,
    NodeHealth,
    breaker_open_reason,
    truncate,
)
from .._observe._logs import LOG_CONTEXT
from ._effects import SideEffects, resolve
from ._eventloop import precise_timers_enabled
from ._eventloop import run as run_precise
from ._runner import NodeRunner, backoff
from ._sampling import NEVER, Sampling, histograms_enabled

__all__ = ["LoopManager"]


_FAILED: Any = object()  # a node call that failed after retries and aborts the iteration


#: Thread and process pools, with non-blocking calls pending: the loop lets their tasks run
#: at least every this many iterations, and whenever this long has passed since it last did.
YIELD_EVERY = 32
YIELD_AFTER_NS = 200_000


class LoopManager(SideEffects, Sampling):
    """Runs one loop: calls the producer, then the chain, iteration after iteration.

    ``run()`` is a coroutine; the pool decides where it runs (a thread's own event loop, a
    shared asyncio event loop, or the main thread of a child process). ``pause()``,
    ``resume()`` and ``stop()`` may be called from any thread; they take effect at the next
    iteration boundary, and ``wait_for_state`` tells when they have.
    """

    def __init__(
        self,
        plan: LoopPlan,
        *,
        workflow: str,
        pool: Pool | None = None,
        max_iterations: int | None = None,
        on_change: Callable[[LoopManager], None] | None = None,
        hub: Any = None,
        replica: int = 0,
        histograms: bool | None = None,
    ) -> None:
        self.plan = plan
        self.hub = hub
        self.replica = replica
        self._finishers: list[Callable[[], None]] = []
        self.name = plan.name
        self.workflow = workflow
        self.pool = pool or plan.spec.pool
        self.max_iterations = max_iterations or plan.spec.max_iterations
        self.log = logging.getLogger(f"ostinato.loop.{plan.name}")
        #: Called on every state change (a hub connection sends the status at once).
        self.on_change = on_change
        self._cond = threading.Condition()
        self._watchers = 0
        self._notified = 0.0
        self._state = LoopState.PENDING
        self._reason: str | None = None
        self._last_error: str | None = None
        self._desired = DesiredState.RUNNING
        #: What was last asked from outside (set_desired): the status's desired_state. Unlike
        #: _desired, a pause or stop of the loop's own (onError, the breaker) leaves it be.
        self._asked = DesiredState.RUNNING
        self._pause_reason: str | None = None
        #: Why the loop was told to stop, when a node's onError did it; shown in the reason.
        self._stop_cause: str | None = None
        self._paused_total = 0.0  # seconds spent paused, told to producers via their context
        self._token = 0  # bumped by every control request; lets a breaker resume only its pause
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakers: set[asyncio.Future[bool]] = set()
        #: Owned waits (NodeContext.wait): their future, and whether only a stop ends them.
        self._owned: dict[asyncio.Future[Any], bool] = {}
        self._runners: list[NodeRunner] = []
        self._producer: NodeRunner | None = None
        self._chain: tuple[NodeRunner, ...] = ()
        self._pending = 0  # non-blocking calls in flight, all nodes
        self._submit_epoch = 0  # bumped when submitted calls are settled early (a stop)
        #: Of ``_pending``, the submitted calls: they need no turn of the loop to start (their
        #: node moves them on by itself), so the loop does not yield for them (_turn_due).
        self._submits = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain_waiter: asyncio.Future[None] | None = None
        self._drained = self._abandoned = 0
        # Why the loop ended by itself (FINISHED), or None while it runs or when it was stopped.
        self._finished: str | None = None
        self.iterations = 0
        self.failed_iterations = 0
        #: Whether the iteration that ended last failed (NodeContext.iteration_failed).
        self._iteration_failed = False
        self._consecutive_failures = 0
        self._stop_signal = threading.Event()
        self._turn_countdown, self._last_turn_ns = YIELD_EVERY, 0  # see _turn_due
        # Duration histograms: one iteration in ``_until_sample`` is timed (see _sample).
        if histograms is None:
            histograms = histograms_enabled()
        precise_timers_enabled()  # a bad $OSTINATO_PRECISE_TIMERS fails here, not in run_sync
        self.histograms = histograms
        self.iteration_durations = Durations()
        self._until_sample = NEVER
        self._sampled: tuple[NodeRunner, ...] = ()
        self._last_sample_ns = self._last_sample_iteration = 0
        self._per_iteration_ns = 0.0

    # -- control, from any thread --------------------------------------------------------------

    def set_desired(self, state: DesiredState, reason: str | None = None) -> None:
        """Ask the loop to run, pause or stop (``reason``: why it pauses, shown in its status).
        What was asked is reported as the status's ``desired_state``; a loop that was asked to
        stop takes no further request."""
        if state is DesiredState.PAUSED and reason is None:
            reason = "paused by request"
        self._request(state, reason, asked=True)

    def pause(self, reason: str = "paused by request") -> None:
        self.set_desired(DesiredState.PAUSED, reason)

    def resume(self) -> None:
        self.set_desired(DesiredState.RUNNING)

    def stop(self) -> None:
        self.set_desired(DesiredState.STOPPED)

    @property
    def desired(self) -> DesiredState:
        """The state the loop heads for now: what was asked, or a pause or stop of its own (an
        error policy, the circuit breaker)."""
        return self._desired

    def _request(self, desired: DesiredState, reason: str | None, asked: bool = False) -> int:
        """``asked``: a request from outside (kept as ``desired_state``), not the loop's own."""
        with self._cond:
            if self._desired is DesiredState.STOPPED:
                return self._token
            self._desired = desired
            if asked:
                self._asked = desired
            self._token += 1
            token = self._token
            if desired is DesiredState.PAUSED:
                self._pause_reason = reason
            elif desired is DesiredState.STOPPED:
                self._stop_cause = reason
        if desired is DesiredState.STOPPED:
            self._stop_signal.set()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                loop.call_soon_threadsafe(self._poke)
        return token

    def _poke(self) -> None:
        stop = self._desired is DesiredState.STOPPED
        if stop:
            self._settle_submitted()
        if self._owned:
            pause = self._desired is DesiredState.PAUSED
            for fut, stop_only in list(self._owned.items()):
                if stop or (pause and not stop_only):
                    resolve(fut, False)
        for waker in self._wakers:
            if not waker.done():
                waker.set_result(False)

    # -- observation, from any thread ----------------------------------------------------------

    @property
    def state(self) -> LoopState:
        return self._state

    def status(self) -> LoopStatus:
        return LoopStatus(
            name=self.name,
            replica=self.replica,
            pool=self.pool.value,
            state=self._state,
            desired_state=self._asked,
            reason=self._reason,
            iterations=self.iterations,
            failed_iterations=self.failed_iterations,
            last_error=self._last_error,
            drained=self._drained,
            abandoned=self._abandoned,
            iteration_duration=self.iteration_durations.snapshot(),
            nodes=[r.status() for r in self._runners],
        )

    def wait_for(self, predicate: Callable[[LoopManager], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds; checked at every state change and iteration,
        and every 50 ms for what changes without either (node health, counters)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._watchers += 1
            try:
                while not predicate(self):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.05))
                return True
            finally:
                self._watchers -= 1

    def wait_for_state(self, *states: LoopState, timeout: float) -> bool:
        return self.wait_for(lambda m: m._state in states, timeout)

    def _set_state(self, state: LoopState, reason: str | None = None) -> None:
        with self._cond:
            self._state = state
            self._reason = reason
            self._cond.notify_all()
        self.log.info("%s%s", state.value, f" ({reason})" if reason else "")
        on_change = self.on_change
        if on_change is not None:
            on_change(self)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- waiting that control can interrupt ---------------------------------------------------

    async def _sleep(self, delay: float, interrupted: Callable[[], bool]) -> bool:
        """Sleep ``delay`` seconds; False as soon as ``interrupted()`` holds after a request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not interrupted():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            waker: asyncio.Future[bool] = loop.create_future()
            timer = loop.call_later(remaining, resolve, waker, True)
            self._wakers.add(waker)
            try:
                if await waker:
                    return True
            finally:
                timer.cancel()
                self._wakers.discard(waker)
        return False

    async def _producer_sleep(self, delay: float) -> bool:
        return await self._sleep(delay, lambda: self._desired is not DesiredState.RUNNING)

    async def _wait_waker(self) -> None:
        waker: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._wakers.add(waker)
        try:
            await waker
        finally:
            self._wakers.discard(waker)

    # -- running -------------------------------------------------------------------------------

    async def _control_wait(
        self, fut: asyncio.Future[Any], stop_only: bool, owned: bool = False
    ) -> bool:
        """Wait until ``fut`` is done (True) or the loop is asked to stop, or with
        ``stop_only=False`` to pause too (False). ``fut`` itself is left alone, unless
        ``owned``: then an interruption resolves it with False (see ``NodeContext.wait``)."""

        def interrupted() -> bool:
            return self._desired is DesiredState.STOPPED or (
                not stop_only and self._desired is DesiredState.PAUSED
            )

        if owned:
            if fut.done():
                return True
            if interrupted():
                return False
            self._owned[fut] = stop_only
            try:
                return bool(await fut)
            finally:
                self._owned.pop(fut, None)
        loop = asyncio.get_running_loop()
        while not fut.done():
            if interrupted():
                return False
            waker: asyncio.Future[bool] = loop.create_future()
            fut.add_done_callback(lambda _f, w=waker: resolve(w, True))  # type: ignore[misc]
            self._wakers.add(waker)
            try:
                await waker
            finally:
                self._wakers.discard(waker)
        return True

    def _end_iteration(self) -> None:
        if len(self._finishers) == 1:  # one (a reader's acknowledgement): no copy of the list
            try:
                self._finishers.pop()()
            except Exception:
                self.log.exception("iteration-end callback failed")
            return
        finishers = self._finishers[:]  # nodes hold this list's append: clear it in place
        self._finishers.clear()
        for callback in finishers:
            try:
                callback()
            except Exception:
                self.log.exception("iteration-end callback failed")

    def run_sync(self) -> None:
        """Run the loop on an event loop of its own in the calling thread (thread, process),
        one whose timers keep time to the microsecond (see ``_eventloop``)."""
        run_precise(self.run())

    @property
    def log_iteration(self) -> int | None:
        """What log records say as ``iteration``: the one in progress, None between them."""
        return self.iterations + 1 if self._state is LoopState.RUNNING else None

    def _enter_log_context(self) -> None:
        """Records logged from here on (this task, this thread) name this loop replica."""
        LOG_CONTEXT.set(self)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._enter_log_context()
        spec = self.plan.spec
        offload = self.pool is Pool.ASYNCIO
        worker = ThreadPoolExecutor(
            1,
            thread_name_prefix=f"ostinato-{self.name}-node",
            initializer=self._enter_log_context,
        )
        effects = ThreadPoolExecutor(
            spec.side_effect_workers,
            thread_name_prefix=f"ostinato-{self.name}-fx",
            initializer=self._enter_log_context,
        )
        started: list[NodeRunner] = []
        try:
            for node_plan in (self.plan.producer, *self.plan.chain):
                runner = self._make_runner(node_plan, offload, worker)
                self._runners.append(runner)
            for runner in self._runners:
                await runner.hook("setup", offload)
                started.append(runner)
        except Exception as exc:
            self._last_error = truncate(f"setup of node {runner.name!r} failed: {exc}")
            self.log.error("%s\n%s", self._last_error, "".join(traceback.format_exception(exc)))
            await self._teardown(started, offload)
            worker.shutdown(wait=False)
            effects.shutdown(wait=False)
            self._set_state(LoopState.ERROR, "setup failed")
            raise
        self._producer, *chain = self._runners
        self._chain = tuple(chain)
        self._sampled = tuple(r for r in self._runners if r.blocking or r is self._producer)
        if self.histograms:  # the first iteration is sampled
            self._sample(0)
        self._effects = effects
        self._set_state(LoopState.RUNNING)
        try:
            await self._iterate()
        except BaseException as exc:
            self._last_error = truncate(f"{type(exc).__name__}: {exc}")
            self._set_state(LoopState.ERROR, "engine failure")
            raise
        finally:
            if self._state is not LoopState.ERROR:
                self._set_state(LoopState.STOPPING)
                await self._drain(spec.drain_timeout_seconds)
                await self._teardown(started, offload)
                if self._finished is not None:
                    self._set_state(LoopState.FINISHED, f"{self._finished}; {self._stop_reason()}")
                else:
                    self._set_state(LoopState.STOPPED, self._stop_reason())
            effects.shutdown(wait=False, cancel_futures=True)
            worker.shutdown(wait=False)

    def _stop_reason(self) -> str:
        drain = f"drained {self._drained}, abandoned {self._abandoned} non-blocking call(s)"
        return f"{self._stop_cause}; {drain}" if self._stop_cause else drain

    def _make_runner(self, plan: NodePlan, offload: bool, worker: ThreadPoolExecutor) -> NodeRunner:
        context = NodeContext(
            workflow=self.workflow,
            loop=self.name,
            node=plan.name,
            sleeper=self._producer_sleep,
            paused=lambda: self._paused_total,
            waiter=self._control_wait,
            finisher=self._finishers.append,
            failed=lambda: self._iteration_failed,
            hub=self.hub,
        )
        node = plan.cls(plan.config, context)
        return NodeRunner(plan, node, offload=offload, worker=worker)

    async def _iterate(self) -> None:
        producer = self._producer
        assert producer is not None
        chain = self._chain
        yield_each = self.pool is Pool.ASYNCIO
        name = self.name
        limit = self.max_iterations
        # The hot loop: constants as locals, because in Python 3.11 an enum member lookup
        # such as NodeHealth.HEALTHY costs 0.1-0.2 µs and it ran once per node call.
        run, stop = DesiredState.RUNNING, DesiredState.STOPPED
        healthy, keep_going = NodeHealth.HEALTHY, ErrorPolicy.CONTINUE
        node_data, now, trace_id = NodeData, time.time, new_trace_id
        while True:
            if self._desired is not run:
                if self._desired is stop:
                    return
                await self._paused()
                continue
            if limit is not None and self.iterations >= limit:
                self._finished = f"reached its limit of {limit} iteration(s)"
                return
            try:
                if producer.inline:
                    out = producer.call()
                else:  # acall's first case without its call: an async producer (a reader)
                    out = await (producer.call() if producer.is_async else producer.acall())
            except ProducerExhausted:
                self.log.info("producer exhausted after %d iteration(s)", self.iterations)
                self._finished = f"the producer is exhausted after {self.iterations} iteration(s)"
                return
            except Exception as exc:
                out = await self._recover(producer, exc, ())
                if out is _FAILED:
                    self._iteration_done(failed=True)
                    if self._finishers:
                        self._end_iteration()
                    continue
            else:
                producer.calls += 1
                if producer.health is not healthy:
                    producer.recovered()
            if out is None:
                if self._finishers:
                    self._iteration_failed = False  # no iteration: nothing of it failed
                    self._end_iteration()
                if yield_each or (self._pending > self._submits and self._turn_due()):
                    await asyncio.sleep(0)
                continue
            if type(out) is node_data:
                data = out
                data.loop = name
                data.iteration = self.iterations + 1
            else:  # every field given: skips the dataclass's default factories
                data = node_data(out, name, self.iterations + 1, now(), trace_id(), {})
            failed = False
            for r in chain:
                if r.blocking:
                    try:
                        res = r.call(data) if r.inline else await r.acall(data)
                    except Exception as exc:
                        res = await self._recover(r, exc, (data,))
                        if res is _FAILED:
                            failed = True
                            if r.on_error is keep_going:
                                continue
                            break
                    else:
                        r.calls += 1
                        if r.health is not healthy:
                            r.recovered()
                    if type(res) is not node_data:
                        res = data.with_payload(res)
                    data = res
                else:
                    if r.in_flight >= r.max_in_flight:
                        if r.drops():
                            r.dropped += 1
                            continue
                        if not await self._wait_slot(r):
                            continue
                    self._dispatch(r, data)
            if failed or self._until_sample <= 1 or self._watchers:
                self._iteration_done(failed)
            else:  # _iteration_done's common case (nothing failed, sampled or watched), inline
                self.iterations += 1
                self._iteration_failed = False
                self._until_sample -= 1
                self._consecutive_failures = 0
            if self._finishers:
                self._end_iteration()
            if yield_each or (self._pending > self._submits and self._turn_due()):
                await asyncio.sleep(0)

    def _turn_due(self) -> bool:
        """With non-blocking calls pending (thread and process pools), whether the loop should
        let their tasks run now. Their tasks run when the loop yields; yielding after every
        iteration costs an event-loop turn (an epoll_wait system call) per iteration, most of a
        fast writer's time. So: every YIELD_EVERY iterations, or as soon as YIELD_AFTER_NS have
        passed since the last turn, so that a slow loop still starts each call at once."""
        self._turn_countdown -= 1
        now = time.perf_counter_ns()
        if self._turn_countdown <= 0 or now - self._last_turn_ns >= YIELD_AFTER_NS:
            self._turn_countdown, self._last_turn_ns = YIELD_EVERY, now
            return True
        return False

    def _iteration_done(self, failed: bool) -> None:
        self.iterations += 1
        self._iteration_failed = failed
        until = self._until_sample - 1
        self._until_sample = until
        if until <= 0:
            self._sample(until)
        if failed:
            self.failed_iterations += 1
            self._consecutive_failures += 1
            breaker = self.plan.spec.circuit_breaker
            if breaker is not None and self._consecutive_failures >= breaker.consecutive_failures:
                self._open_breaker(breaker.consecutive_failures, breaker.cooldown_seconds)
        else:
            self._consecutive_failures = 0
        if self._watchers:  # at most once a millisecond: waking a waiter costs the loop the GIL
            moment = time.monotonic()
            if moment - self._notified >= 0.001:
                self._notified = moment
                self._notify()

    def _open_breaker(self, failures: int, cooldown: float) -> None:
        self._consecutive_failures = 0
        reason = breaker_open_reason(failures, cooldown)
        self.log.warning("%s", reason)
        token = self._request(DesiredState.PAUSED, reason)
        assert self._loop is not None
        self._loop.call_later(cooldown, self._close_breaker, token)

    def _close_breaker(self, token: int) -> None:
        with self._cond:
            if self._token != token:  # someone paused, resumed or stopped since: theirs wins
                return
        self.log.info("circuit half-open: resuming")
        self._request(DesiredState.RUNNING, None)

    async def _paused(self) -> None:
        await self._hooks("on_pause")
        self._set_state(LoopState.PAUSED, self._pause_reason)
        since = time.monotonic()
        while self._desired is DesiredState.PAUSED:
            if self._reason != self._pause_reason:  # paused again, for another reason
                self._set_state(LoopState.PAUSED, self._pause_reason)
            await self._wait_waker()
        self._paused_total += time.monotonic() - since
        if self._desired is DesiredState.RUNNING:
            await self._hooks("on_resume")
            self._set_state(LoopState.RUNNING)

    async def _hooks(self, name: str) -> None:
        """Call every node's ``on_pause`` or ``on_resume``; a failing hook is logged only."""
        offload = self.pool is Pool.ASYNCIO
        for runner in self._runners:
            try:
                await runner.hook(name, offload)
            except Exception as exc:
                runner.node.logger.error("%s failed: %s: %s", name, type(exc).__name__, exc)

    # -- errors --------------------------------------------------------------------------------

    async def _recover(self, r: NodeRunner, exc: Exception, args: tuple[Any, ...]) -> Any:
        """Retry a failed call per its policy; then apply onError. Returns the result or _FAILED
        (for ``continue``, the input passes on)."""
        attempt = 1
        while attempt < r.retry.max_attempts:
            r.retrying(exc, attempt)
            attempt += 1
            if not await self._sleep(
                backoff(r.retry, attempt - 1), lambda: self._desired is DesiredState.STOPPED
            ):
                break
            try:
                result = r.call(*args) if r.inline else await r.acall(*args)
            except Exception as again:
                exc = again
            else:
                r.succeeded()
                return result
        self._on_error(r, r.failed(exc))
        return _FAILED

    def _on_error(self, r: NodeRunner, policy: ErrorPolicy) -> None:
        """After a call of ``r`` failed for good: record it, and pause or stop the loop when
        its onError says so, with the node and its error as the reason (not only in the
        node's lastError, where the loop's status would hide it)."""
        self._last_error = f"{r.name}: {r.last_error}"
        if policy is ErrorPolicy.PAUSE_LOOP:
            why = f"paused by node {r.name!r} (onError: pauseLoop): {r.last_error}"
            self._request(DesiredState.PAUSED, why)
        elif policy is ErrorPolicy.STOP_LOOP:
            self.log.warning("stopping: node %r failed (onError=stopLoop)", r.name)
            why = f"stopped by node {r.name!r} (onError: stopLoop): {r.last_error}"
            self._request(DesiredState.STOPPED, why)

    async def _teardown(self, runners: list[NodeRunner], offload: bool) -> None:
        for runner in reversed(runners):
            try:
                await runner.hook("teardown", offload)
            except Exception as exc:
                runner.node.logger.error("teardown failed: %s: %s", type(exc).__name__, exc)
