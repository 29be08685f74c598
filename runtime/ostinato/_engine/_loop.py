"""The loop engine: LoopManager runs one loop's iterations under docs/concepts.md in any pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from .._model._nodes import NodeContext, NodeData, ProducerExhausted, new_trace_id
from .._model._plan import LoopPlan, NodePlan
from .._model._spec import DesiredState, ErrorPolicy, Pool
from .._model._status import Durations, LoopState, LoopStatus, NodeHealth, truncate
from .._observe._logs import LOG_CONTEXT
from ._eventloop import precise_timers_enabled
from ._eventloop import run as run_precise
from ._runner import NodeRunner, backoff

__all__ = ["HISTOGRAMS_ENV", "LoopManager", "histograms_enabled"]

#: Environment variable that turns the duration histograms off ("off") for a whole process
#: tree (process loops inherit it); "on" is the default. For A/B benchmarks of their cost.
HISTOGRAMS_ENV = "OSTINATO_HISTOGRAMS"
#: What sampling may cost a loop at most, as a share of its time (see ``LoopManager._sample``).
SAMPLING_BUDGET = 0.01
#: What timing one iteration costs, nanoseconds: a fixed part (swapping the calls, the
#: iteration's own observation) and a part per timed call (two perf_counter_ns reads, one
#: bisection). Measured on a loaded 2-core machine, rounded up: 0.8 µs per call.
SAMPLE_COST_NS = 2_000
SAMPLE_COST_PER_CALL_NS = 1_000
#: The longest gap between two sampled iterations, iterations: a loop running at 200,000
#: iterations/s still gets 200 samples a second.
MAX_SAMPLE_INTERVAL = 1_000
#: Weight of the newest measurement in the smoothed time per iteration (an exponential moving
#: average over about the last ten samples).
SMOOTHING = 0.1
_NEVER = 1 << 62


def histograms_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the duration histograms are on, from ``$OSTINATO_HISTOGRAMS`` (default on)."""
    value = (os.environ if environ is None else environ).get(HISTOGRAMS_ENV, "on").lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{HISTOGRAMS_ENV}={value!r}: expected 'on' or 'off'")


_FAILED: Any = object()  # a node call that failed after retries and aborts the iteration
#: What a sync side-effect call reports back: its last error, retries, attempt durations (ns).
_EffectResult = tuple[Exception | None, int, list[int]]


#: Thread and process pools, with non-blocking calls pending: the loop lets their tasks run
#: at least every this many iterations, and whenever this long has passed since it last did.
YIELD_EVERY = 32
YIELD_AFTER_NS = 200_000


class LoopManager:
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
        self._consecutive_failures = 0
        self._stop_signal = threading.Event()
        self._turn_countdown, self._last_turn_ns = YIELD_EVERY, 0  # see _turn_due
        # Duration histograms: one iteration in ``_until_sample`` is timed (see _sample).
        if histograms is None:
            histograms = histograms_enabled()
        precise_timers_enabled()  # a bad $OSTINATO_PRECISE_TIMERS fails here, not in run_sync
        self.histograms = histograms
        self.iteration_durations = Durations()
        self._until_sample = _NEVER
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
                    _resolve(fut, False)
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
            timer = loop.call_later(remaining, _resolve, waker, True)
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
            fut.add_done_callback(lambda _f, w=waker: _resolve(w, True))  # type: ignore[misc]
            self._wakers.add(waker)
            try:
                await waker
            finally:
                self._wakers.discard(waker)
        return True

    def _end_iteration(self) -> None:
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
                out = producer.call() if producer.inline else await producer.acall()
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
            self._iteration_done(failed)
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

    def _sample(self, until: int) -> None:
        """Start timing the next iteration (``until`` 0), or finish timing this one (-1).

        A sampled iteration swaps each producer's and blocking node's ``call`` for its timed
        wrapper, which observes every attempt in the node's histogram; when it ends, the
        iteration's duration (from the producer's output to now) goes into the loop's. Timing
        every call would cost a fast loop more than the engine itself (about 0.8 µs per call
        against 0.4), so the next sample comes after as many iterations as keep the cost under
        SAMPLING_BUDGET of the loop's time: every iteration once one takes 1.3 ms or more
        (with a producer and ten nodes), about one in 300 for a loop of ten no-ops.
        """
        if until == 0:
            for r in self._sampled:
                r.call = r.timed
            self._until_sample = 0
            return
        end = time.perf_counter_ns()
        producer = self._producer
        assert producer is not None
        self.iteration_durations.observe(end - producer.ended_ns)
        # The loop's time per iteration: on average since the last sample, smoothed over
        # the last samples (one quick iteration, a producer catching up a late tick, must not
        # thin out the samples of a slow loop); for the first sample, this iteration's.
        if self._last_sample_ns:
            span = end - self._last_sample_ns
            measured = span / max(self.iterations - self._last_sample_iteration, 1)
            self._per_iteration_ns += SMOOTHING * (measured - self._per_iteration_ns)
        else:
            self._per_iteration_ns = end - producer.started_ns
        self._last_sample_ns, self._last_sample_iteration = end, self.iterations
        cost = SAMPLE_COST_NS + SAMPLE_COST_PER_CALL_NS * len(self._sampled)
        every = min(
            math.ceil(cost / (SAMPLING_BUDGET * max(self._per_iteration_ns, 1))),
            MAX_SAMPLE_INTERVAL,
        )
        if every > 1:  # else the timed calls stay: the next iteration is sampled too
            for r in self._sampled:
                r.call = r.plain
        # Counted down at the end of each iteration: at 0 the next one is timed.
        self._until_sample = every - 1

    def _open_breaker(self, failures: int, cooldown: float) -> None:
        self._consecutive_failures = 0
        reason = f"circuit open after {failures} failed iterations; retry in {cooldown:g}s"
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

    # -- non-blocking side effects -------------------------------------------------------------

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
                timer = loop.call_later(deadline - loop.time(), _resolve, waiter, True)
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
            done = partial(
                self._submitted,
                r,
                data,
                self._submit_epoch,
                # Timed in the iterations the sampler times (_sample), as blocking calls are.
                time.perf_counter_ns() if self.histograms and self._until_sample <= 0 else 0,
            )
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
        self, r: NodeRunner, data: NodeData, epoch: int, start: int, error: BaseException | None
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
            r.succeeded()  # _account's success path, minus its branches: once per queue put
            self._release(r, drained=True)
        elif not isinstance(error, Exception):  # cancelled: neither done nor failed
            self._abandoned += 1
            self._account(r, None, 0, abandoned=True)
        elif r.retry.max_attempts > 1 and self._desired is not DesiredState.STOPPED:
            task = asyncio.get_running_loop().create_task(self._effect_async(r, data, error))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._account(r, error, 0)

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
        r.release()
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

    async def _teardown(self, runners: list[NodeRunner], offload: bool) -> None:
        for runner in reversed(runners):
            try:
                await runner.hook("teardown", offload)
            except Exception as exc:
                runner.node.logger.error("teardown failed: %s: %s", type(exc).__name__, exc)


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)
