"""The duration histograms of a loop: which iterations are timed, so that timing costs a fast
loop at most SAMPLING_BUDGET of its time (a part of LoopManager, as a mixin)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._model._status import Durations
from ._env import env_switch
from ._runner import NodeRunner

__all__ = [
    "HISTOGRAMS_ENV",
    "MAX_SAMPLE_INTERVAL",
    "NEVER",
    "Sampling",
    "histograms_enabled",
]

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
#: ``_until_sample`` of a loop that samples nothing (histograms off).
NEVER = 1 << 62


def histograms_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the duration histograms are on, from ``$OSTINATO_HISTOGRAMS`` (default on)."""
    return env_switch(HISTOGRAMS_ENV, environ)


class Sampling:
    """LoopManager's sampling of iterations for its duration histograms."""

    if TYPE_CHECKING:  # LoopManager's, set in its __init__
        iterations: int
        iteration_durations: Durations
        _producer: NodeRunner | None
        _sampled: tuple[NodeRunner, ...]
        _until_sample: int
        _last_sample_ns: int
        _last_sample_iteration: int
        _per_iteration_ns: float

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
