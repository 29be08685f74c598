"""A real Prometheus server scrapes a workflow with loops in all three pools (issue 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import RATE, TICKING, Running, wait_until
from .prometheus import SCRAPE_SECONDS, Prometheus, binary

pytestmark = pytest.mark.skipif(
    binary() is None,
    reason="prometheus not installed: run `make pytest` as root, or apt-get install prometheus",
)

#: rate() over this window, seconds: ten scrapes.
WINDOW_SECONDS = 10
#: How far the measured rate may be from the producers' configured 50 iterations/s. rate()
#: extrapolates from about ten samples, each up to one heartbeat (0.1 s) old for the process
#: loop, and an IntervalProducer on a busy 2-core machine may miss ticks: 15% covers both.
TOLERANCE = 0.15


@pytest.fixture(scope="module")
def prometheus(running: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping the running workflow, with WINDOW_SECONDS + 2 scrapes stored."""
    target = f"{running.server.host}:{running.server.port}"
    server = Prometheus(Path(tmp_path_factory.mktemp("prometheus")), target)
    try:
        server.wait_ready(timeout=30)
        scrapes = f"count_over_time(ostinato_build_info[{WINDOW_SECONDS + 5}s])"
        assert wait_until(
            lambda: any(v >= WINDOW_SECONDS + 2 for v in server.query(scrapes).values()),
            timeout=(WINDOW_SECONDS + 2) * SCRAPE_SECONDS + 30,
            every=0.5,
        ), f"too few scrapes: {server.api('targets')}"
        yield server
    finally:
        server.stop()
    assert server.proc.poll() is not None


@pytest.mark.timeout(120)
def test_the_target_is_up(prometheus: Prometheus) -> None:
    [target] = prometheus.api("targets")["activeTargets"]
    assert target["health"] == "up", target


@pytest.mark.timeout(120)
def test_rate_of_iterations_matches_the_producers_rate(prometheus: Prometheus) -> None:
    rates = prometheus.by(f"rate(ostinato_iterations_total[{WINDOW_SECONDS}s])", "loop")
    for loop in TICKING:
        assert abs(rates[loop] - RATE) <= TOLERANCE * RATE, (
            f"loop {loop} ({TICKING[loop]} pool): {rates[loop]:.1f}/s, "
            f"configured {RATE:g}/s ± {TOLERANCE:.0%}"
        )


@pytest.mark.timeout(120)
def test_a_node_that_raises_shows_in_its_error_counter(prometheus: Prometheus) -> None:
    errors = prometheus.by('ostinato_node_errors_total{node="flaky"}', "loop")
    share = prometheus.by(
        'ostinato_node_errors_total{node="flaky"} / ostinato_node_calls_total{node="flaky"}',
        "loop",
    )
    health_failing_ever = prometheus.by(
        f'max_over_time(ostinato_node_health{{node="flaky"}}[{WINDOW_SECONDS}s])', "loop"
    )
    for loop in TICKING:
        assert errors[loop] > 0, loop
        # FailEvery raises on every 5th call: a fifth of the calls are errors.
        assert share[loop] == pytest.approx(0.2, abs=0.01), loop
        assert health_failing_ever[loop] in (0, 1, 2), loop
    failed = prometheus.by(f"increase(ostinato_failed_iterations_total[{WINDOW_SECONDS}s])", "loop")
    assert all(failed[loop] > 0 for loop in TICKING), failed


@pytest.mark.timeout(120)
def test_duration_histograms_have_sane_counts(prometheus: Prometheus) -> None:
    iterations = prometheus.by("ostinato_iterations_total", "loop")
    timed = prometheus.by("ostinato_iteration_duration_seconds_count", "loop")
    inf = prometheus.by('ostinato_iteration_duration_seconds_bucket{le="+Inf"}', "loop")
    flaky = prometheus.by('ostinato_node_duration_seconds_count{node="flaky"}', "loop")
    flaky_calls = prometheus.by('ostinato_node_calls_total{node="flaky"}', "loop")
    tick_median = prometheus.by(
        "histogram_quantile(0.5, rate("
        f'ostinato_node_duration_seconds_bucket{{node="tick"}}[{WINDOW_SECONDS}s]))',
        "loop",
    )
    flaky_median = prometheus.by(
        "histogram_quantile(0.5, rate("
        f'ostinato_node_duration_seconds_bucket{{node="flaky"}}[{WINDOW_SECONDS}s]))',
        "loop",
    )
    for loop in TICKING:
        # A loop that waits 20 ms for each tick is slow enough to have nearly every iteration
        # and call timed: only an iteration whose producer caught up a late tick at once is
        # quick enough to make the engine skip a few (sampling budget), and the status may be
        # read while an iteration runs.
        assert 0.95 * iterations[loop] <= timed[loop] <= iterations[loop] + 1, loop
        assert inf[loop] == timed[loop], loop
        assert 0.95 * flaky_calls[loop] <= flaky[loop] <= flaky_calls[loop] + 1, loop
        # The producer waits for its tick: 20 ms less the iteration's work, in (10, 30] ms.
        assert 0.003 < tick_median[loop] <= 0.03, (loop, tick_median[loop])
        # FailEvery does next to nothing.
        assert flaky_median[loop] < 0.001, (loop, flaky_median[loop])
    sums = prometheus.by('ostinato_node_duration_seconds_sum{node="tick"}', "loop")
    assert all(sums[loop] > 0 for loop in TICKING), sums
