"""The observability server against a real workflow: loops in every pool, a queue, real HTTP."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ostinato import LoopState, WorkflowOrchestrator, WorkflowStatus
from ostinato._observe._http import HttpSettings, ObservabilityServer

from .conftest import RATE, TICKING, N, Running, get, ticking_loop, wait_until
from .nodes import GATES

LOOPS = {*TICKING, "sink"}
LOOP_SERIES = {
    "ostinato_iterations_total",
    "ostinato_failed_iterations_total",
    "ostinato_loop_restarts_total",
    "ostinato_loop_state",
    "ostinato_loop_replicas",
}
NODE_SERIES = {
    "ostinato_node_calls_total",
    "ostinato_node_errors_total",
    "ostinato_node_retries_total",
    "ostinato_node_in_flight",
    "ostinato_node_dropped_total",
    "ostinato_node_health",
}
QUEUE_SERIES = {
    "ostinato_queue_depth",
    "ostinato_queue_enqueued_total",
    "ostinato_queue_delivered_total",
    "ostinato_queue_acknowledged_total",
    "ostinato_queue_dropped_total",
    "ostinato_queue_redelivered_total",
    "ostinato_queue_refused_total",
}
#: Nodes of each loop (the producer first).
NODES = {"t": ["tick", "flaky", "publish"], "a": ["tick", "flaky"], "p": ["tick", "flaky"]}
NODES["sink"] = ["ticks", "log"]

Series = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(env: Running) -> tuple[Series, dict[str, str]]:
    """Every sample as {sample name: {sorted labels: value}}, and each family's type."""
    reply = env.get("/metrics")
    assert reply.code == 200
    assert reply.content_type.startswith("text/plain; version=0.0.4")
    series: Series = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(reply.body):
        for sample in family.samples:
            types[sample.name] = family.type
            labels = tuple(sorted(sample.labels.items()))
            assert labels not in series.setdefault(sample.name, {}), f"duplicate {sample}"
            series[sample.name][labels] = sample.value
    return series, types


def value(series: Series, name: str, **labels: str) -> float:
    return series[name][tuple(sorted({"workflow": "observed", **labels}.items()))]


def status_of(env: Running) -> WorkflowStatus:
    reply = env.get("/status")
    assert reply.code == 200
    assert reply.content_type == "application/json"
    return WorkflowStatus.model_validate(reply.json())


def test_healthz_is_ok_and_unknown_paths_are_404(running: Running) -> None:
    reply = running.get("/healthz")
    assert (reply.code, reply.body) == (200, "ok\n")
    for path in ("/", "/nope", "/metrics/x", "/statusz"):
        assert running.get(path).code == 404, path
    assert running.get("/healthz?verbose=1").code == 200  # a query string is not the path


def test_metrics_have_every_series_with_only_the_design_labels(running: Running) -> None:
    series, types = scrape(running)
    assert set(series) >= LOOP_SERIES | NODE_SERIES | QUEUE_SERIES | {
        "ostinato_missed_ticks_total",
        "ostinato_build_info",
    }
    assert all(name.startswith("ostinato_") for name in series)
    for name, kind in types.items():
        assert (kind == "counter") == name.endswith("_total"), name
    wf = ("workflow", "observed")
    for name in LOOP_SERIES:
        assert set(series[name]) == {(("loop", lp), wf) for lp in LOOPS}, name
    for name in NODE_SERIES:
        expected = {(("loop", lp), ("node", n), wf) for lp, nodes in NODES.items() for n in nodes}
        assert set(series[name]) == expected, name
    assert set(series["ostinato_missed_ticks_total"]) == {
        (("loop", lp), ("node", nodes[0]), wf) for lp, nodes in NODES.items()
    }
    for name in QUEUE_SERIES:
        assert set(series[name]) == {(("queue", "ticks"), wf)}, name
    [(labels, one)] = series["ostinato_build_info"].items()
    assert one == 1
    assert dict(labels).keys() == {"workflow", "version"}
    for lp in LOOPS:
        assert value(series, "ostinato_loop_state", loop=lp) == 1  # running
        assert value(series, "ostinato_loop_replicas", loop=lp) == 1
        assert value(series, "ostinato_node_health", loop=lp, node=NODES[lp][0]) == 0
    assert value(series, "ostinato_queue_enqueued_total", queue="ticks") > 0
    assert value(series, "ostinato_queue_delivered_total", queue="ticks") > 0


def test_iterations_grow_at_the_configured_rate(running: Running) -> None:
    before, _ = scrape(running)
    t0 = time.monotonic()
    time.sleep(1.5)  # the measuring window
    after, _ = scrape(running)
    elapsed = time.monotonic() - t0
    for lp in TICKING:
        grown = value(after, "ostinato_iterations_total", loop=lp) - value(
            before, "ostinato_iterations_total", loop=lp
        )
        rate = grown / elapsed
        assert 0.5 * RATE <= rate <= 1.5 * RATE, f"loop {lp}: {rate:.1f}/s, expected ~{RATE}/s"


def test_status_reports_the_iteration_rate_over_its_window(running: Running) -> None:
    # A server of its own, started now that every loop runs: its first sample is not taken
    # while the process loop was still starting (that would lower the first windows' rate).
    rates = HttpSettings(rate_window_seconds=2.0, sample_every_seconds=0.5)
    with ObservabilityServer(running.orchestrator, settings=rates) as srv:

        def windows() -> list[Any]:
            loops = get(srv.url + "/status").json()["loops"]
            return [lp for lp in loops if lp["name"] in TICKING]

        assert wait_until(
            lambda: all((lp["iterationsPerSecondWindow"] or 0) >= 1.5 for lp in windows()),
            timeout=10,
        )
        for lp in windows():
            assert lp["iterationsPerSecondWindow"] <= 2.0
            ips = lp["iterationsPerSecond"]
            assert 0.5 * RATE <= ips <= 1.5 * RATE, f"loop {lp['name']}: {ips}/s"


def test_failing_node_errors_match_status(running: Running) -> None:
    orch = running.orchestrator
    for lp in TICKING:  # paused loops stand still: metrics and status can be compared exactly
        orch.pause(lp)
    try:
        for lp in TICKING:
            assert orch.loop(lp).wait_for_state(LoopState.PAUSED, timeout=10), lp
        series, _ = scrape(running)
        status = status_of(running)
        for lp in TICKING:
            flaky = status.loop(lp).node("flaky")
            errors = value(series, "ostinato_node_errors_total", loop=lp, node="flaky")
            assert errors > 0
            assert errors == flaky.errors
            assert errors == flaky.calls // 5  # it raises on every 5th call
            assert value(series, "ostinato_node_calls_total", loop=lp, node="flaky") == flaky.calls
            assert value(series, "ostinato_failed_iterations_total", loop=lp) == errors
            assert value(series, "ostinato_iterations_total", loop=lp) == status.loop(lp).iterations
    finally:
        for lp in TICKING:
            orch.resume(lp)
    for lp in TICKING:
        assert orch.loop(lp).wait_for_state(LoopState.RUNNING, timeout=10), lp


def test_the_process_loop_counters_reach_the_parent(running: Running) -> None:
    status = status_of(running)
    p = status.loop("p")
    assert p.pool == "process"
    assert p.pid is not None
    assert p.pid != os.getpid()
    series, _ = scrape(running)
    assert value(series, "ostinato_iterations_total", loop="p") > 0
    assert value(series, "ostinato_node_calls_total", loop="p", node="flaky") > 0
    assert value(series, "ostinato_node_errors_total", loop="p", node="flaky") > 0
    assert value(series, "ostinato_missed_ticks_total", loop="p", node="tick") >= 0


@pytest.mark.parametrize("loop", sorted(TICKING))
def test_status_reflects_pause_and_resume(running: Running, loop: str) -> None:
    handle = running.orchestrator.loop(loop)
    running.orchestrator.pause(loop)
    try:
        assert handle.wait_for_state(LoopState.PAUSED, timeout=10)
        assert status_of(running).loop(loop).state is LoopState.PAUSED
        series, _ = scrape(running)
        assert value(series, "ostinato_loop_state", loop=loop) == 2
        assert running.get("/readyz").code == 200  # paused has started: still ready
    finally:
        running.orchestrator.resume(loop)
    assert handle.wait_for_state(LoopState.RUNNING, timeout=10)
    assert status_of(running).loop(loop).state is LoopState.RUNNING
    series, _ = scrape(running)
    assert value(series, "ostinato_loop_state", loop=loop) == 1


def test_readyz_before_start_while_a_loop_is_pending_and_after_stop() -> None:
    gate = "readyz"
    GATES[gate] = threading.Event()
    gated = {
        "name": "gated",
        "kind": "blocking",
        "class": N + "GatedSetup",
        "config": {"gate": gate},
    }
    doc = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "gated"},
        "spec": {"loops": [ticking_loop("slow", "thread", gated), ticking_loop("quick", "thread")]},
    }
    orch = WorkflowOrchestrator(doc)
    with ObservabilityServer(orch) as srv:
        try:
            reply = get(srv.url + "/readyz")
            assert reply.code == 503
            assert reply.content_type == "application/json"
            assert reply.json() == {"ready": False, "reason": "the workflow has not started"}
            assert get(srv.url + "/healthz").code == 200  # alive, though not ready
            orch.start()
            assert orch.loop("quick").wait_for_state(LoopState.RUNNING, timeout=10)
            reply = get(srv.url + "/readyz")
            assert reply.code == 503
            assert "slow" in reply.json()["reason"]
            assert "quick" not in reply.json()["reason"]
            GATES[gate].set()
            assert orch.loop("slow").wait_for_state(LoopState.RUNNING, timeout=10)
            reply = get(srv.url + "/readyz")
            assert (reply.code, reply.json()) == (200, {"ready": True})
        finally:
            GATES[gate].set()
            orch.stop(timeout=20)
        reply = get(srv.url + "/readyz")
        assert reply.code == 503
        assert "hub" in reply.json()["reason"]
        assert get(srv.url + "/status").code == 200  # the final status is still served
