"""Duration histograms: bucket arithmetic, what the engine samples, and their series."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ostinato import LoopStatus, WorkflowStatus, load_workflow
from ostinato._engine._sampling import HISTOGRAMS_ENV, MAX_SAMPLE_INTERVAL, histograms_enabled
from ostinato._model._status import DURATION_BUCKETS_SECONDS, DurationHistogram, Durations
from ostinato._observe._metrics import metrics_registry
from ostinato.lowlevel import LoopManager

N = "tests.observability.nodes:"


def test_an_observation_on_a_bound_counts_in_that_bucket() -> None:
    d = Durations()
    d.observe(1_000)  # exactly 1 µs: le="1e-06"
    d.observe(1_001)  # just above: le="3e-06"
    d.observe(2_500_000)  # 2.5 ms: le="0.003"
    d.observe(61 * 10**9)  # above 60 s: +Inf only
    h = d.snapshot()
    assert len(h.counts) == len(DURATION_BUCKETS_SECONDS) + 1
    assert h.counts[0] == 1
    assert h.counts[1] == 1
    assert h.counts[DURATION_BUCKETS_SECONDS.index(3e-3)] == 1
    assert h.counts[-1] == 1
    assert h.count == 4
    assert h.sum_seconds == pytest.approx((1_000 + 1_001 + 2_500_000 + 61e9) / 1e9)
    cumulative = h.cumulative()
    assert cumulative[0] == ("1e-06", 1)
    assert cumulative[-2] == ("60.0", 3)
    assert cumulative[-1] == ("+Inf", 4)
    assert [n for _, n in cumulative] == sorted(n for _, n in cumulative)


def test_histograms_of_replicas_merge_and_read_back_from_json() -> None:
    a, b = Durations(), Durations()
    a.observe(5_000)
    b.observe(5_000)
    b.observe(50_000_000)
    merged = a.snapshot().merged(b.snapshot())
    assert merged.count == 3
    again = DurationHistogram.model_validate(merged.model_dump(mode="json", by_alias=True))
    assert again == merged
    assert "sumSeconds" in merged.model_dump(by_alias=True)


def document(*nodes: dict[str, Any], count: int, pool: str = "thread") -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "timed"},
        "spec": {
            "loops": [
                {
                    "name": "work",
                    "pool": pool,
                    "producer": {
                        "name": "count",
                        "class": "CounterProducer",
                        "config": {"count": count},
                    },
                    "nodes": list(nodes),
                }
            ]
        },
    }


def run_loop(doc: dict[str, Any], histograms: bool | None = None) -> LoopStatus:
    plan = load_workflow(doc)
    manager = LoopManager(plan.loop("work"), workflow=plan.name, histograms=histograms)
    manager.run_sync()
    return manager.status()


@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_a_slow_loop_has_every_iteration_and_call_timed(pool: str) -> None:
    sleep = {
        "name": "sleep",
        "kind": "blocking",
        "class": N + "Sleep",
        "config": {"seconds": 0.002},
    }
    fx = {"name": "fx", "kind": "nonBlocking", "class": N + "SleepEffect", "config": {}}
    status = run_loop(document(sleep, fx, count=30, pool=pool))
    assert status.iterations == 30
    assert status.iteration_duration.count == 30
    took = status.node("sleep").duration
    assert took.count == 30
    # time.sleep(0.002) takes 2 ms or more: no observation in a bucket below 1 ms.
    below_ms = DURATION_BUCKETS_SECONDS.index(1e-3) + 1
    assert sum(took.counts[:below_ms]) == 0
    assert took.sum_seconds >= 30 * 0.002
    # The iteration holds the sleeping node: at least as long.
    assert status.iteration_duration.sum_seconds >= took.sum_seconds
    # The producer's last call raised ProducerExhausted: timed too, without an iteration.
    assert status.node("count").duration.count in (30, 31)
    # Non-blocking calls are timed in their worker threads, every one of them.
    effect = status.node("fx")
    assert effect.duration.count == effect.calls == 30
    assert effect.duration.sum_seconds >= 30 * 0.002


def test_a_fast_loop_is_sampled_and_every_node_in_the_same_iterations() -> None:
    chain = [{"name": f"n{i}", "kind": "blocking", "class": N + "PassOn"} for i in range(5)]
    iterations = 50_000
    status = run_loop(document(*chain, count=iterations))
    assert status.iterations == iterations
    sampled = status.iteration_duration.count
    # A no-op iteration takes microseconds: far fewer samples than iterations, yet at least
    # one per MAX_SAMPLE_INTERVAL iterations.
    assert iterations // MAX_SAMPLE_INTERVAL <= sampled <= iterations // 20
    for i in range(5):
        assert status.node(f"n{i}").duration.count == sampled
    assert status.node("count").duration.count in (sampled, sampled + 1)


def test_histograms_off_observe_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = [{"name": "n", "kind": "blocking", "class": N + "PassOn"}]
    assert run_loop(document(*chain, count=100), histograms=False).iteration_duration.count == 0
    monkeypatch.setenv(HISTOGRAMS_ENV, "off")
    status = run_loop(document(*chain, count=100))
    assert status.iteration_duration.count == 0
    assert status.node("n").duration.count == 0
    assert status.node("n").calls == 100


def test_a_bad_histograms_setting_names_the_variable() -> None:
    assert histograms_enabled({}) is True
    assert histograms_enabled({HISTOGRAMS_ENV: "OFF"}) is False
    with pytest.raises(ValueError, match=HISTOGRAMS_ENV):
        histograms_enabled({HISTOGRAMS_ENV: "sometimes"})


def test_histogram_series_follow_the_status() -> None:
    status = WorkflowStatus(workflow="w", loops=[run_loop(document(count=5))])
    text = generate_latest(metrics_registry(lambda: status, version="1")).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, labels in (
        ("ostinato_iteration_duration_seconds", {"workflow": "w", "loop": "work"}),
        ("ostinato_node_duration_seconds", {"workflow": "w", "loop": "work", "node": "count"}),
    ):
        family = families[name]
        assert family.type == "histogram"
        buckets = [s for s in family.samples if s.name == name + "_bucket"]
        assert len(buckets) == len(DURATION_BUCKETS_SECONDS) + 1
        assert all({k: v for k, v in s.labels.items() if k != "le"} == labels for s in buckets)
        assert buckets[-1].labels["le"] == "+Inf"
        [count] = [s.value for s in family.samples if s.name == name + "_count"]
        assert buckets[-1].value == count
    [sampled] = [
        s.value
        for s in families["ostinato_iteration_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert sampled == status.loops[0].iteration_duration.count >= 1  # the first is sampled
