"""README's engine guarantees (7): retries, node health, onError policies, the circuit breaker."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ostinato import LoopState, NodeHealth

from .conftest import POOLS, loop, node, workflow
from .nodes import GATES, read

WAIT = 20.0
FAST_RETRY = {"maxAttempts": 3, "initialBackoffSeconds": 0.001, "maxBackoffSeconds": 0.01}


def chain(
    journal: str, pool: str, b: dict[str, Any], count: int = 5, **settings: Any
) -> dict[str, Any]:
    return workflow(
        loop(
            "main",
            pool,
            node("p", "Count", journal=journal, tag="produce", count=count),
            node("a", "Step", "blocking", journal=journal, tag="a"),
            b,
            node("c", "Step", "blocking", journal=journal, tag="c"),
            **settings,
        )
    )


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("step", ["Step", "AsyncStep"])
def test_retry_recovers_and_the_iteration_goes_on(
    run: Any, journal: str, pool: str, step: str
) -> None:
    b = {**node("b", step, "blocking", journal=journal, tag="b", fail_times=2), "retry": FAST_RETRY}
    orch = run(chain(journal, pool, b))
    assert orch.wait(timeout=WAIT)
    status = orch.status().loop("main")
    bs = status.node("b")
    assert (bs.retries, bs.errors, bs.calls, bs.health) == (2, 0, 5, NodeHealth.HEALTHY)
    assert status.failed_iterations == 0
    assert next(x for x in read(journal) if x.startswith("c end")) == "c end 1 payload=1"


@pytest.mark.parametrize("pool", POOLS)
def test_skip_iteration_is_the_default(run: Any, journal: str, pool: str) -> None:
    b = node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[2, 3])
    orch = run(chain(journal, pool, b))
    assert orch.wait(timeout=WAIT)
    status = orch.status().loop("main")
    lines = read(journal)
    assert [x.split(" payload")[0] for x in lines if x.startswith("c end")] == [
        "c end 1",
        "c end 4",
        "c end 5",
    ]
    assert status.iterations == 5
    assert status.failed_iterations == 2
    b_status = status.node("b")
    assert (b_status.errors, b_status.health) == (2, NodeHealth.HEALTHY)
    assert b_status.last_error == "ValueError: b: failure at iteration 3"
    assert status.last_error == "b: ValueError: b: failure at iteration 3"


@pytest.mark.parametrize("pool", POOLS)
def test_continue_passes_the_input_on(run: Any, journal: str, pool: str) -> None:
    b = {
        **node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[2]),
        "onError": "continue",
    }
    orch = run(chain(journal, pool, b))
    assert orch.wait(timeout=WAIT)
    lines = read(journal)
    assert "c end 2 payload=2" in lines
    assert orch.status().loop("main").failed_iterations == 1


@pytest.mark.parametrize("pool", POOLS)
def test_pause_loop_policy(run: Any, journal: str, pool: str) -> None:
    b = {
        **node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[3]),
        "onError": "pauseLoop",
    }
    orch = run(chain(journal, pool, b, count=10))
    main = orch.loop("main")
    assert main.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    status = main.status()
    assert status.iterations == 3
    assert "pauseLoop" in (status.reason or "")
    assert status.node("b").health is NodeHealth.FAILING
    main.resume()
    assert orch.wait(timeout=WAIT)
    final = main.status()
    assert final.iterations == 10
    assert final.node("b").health is NodeHealth.HEALTHY


@pytest.mark.parametrize("pool", POOLS)
def test_stop_loop_policy_stops_only_that_loop(run: Any, journal: str, pool: str) -> None:
    b = {
        **node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[2]),
        "onError": "stopLoop",
    }
    doc = chain(journal, pool, b, count=None)
    doc["spec"]["loops"].append(
        loop("other", "thread", node("p", "Count", journal=journal, tag="other"))
    )
    orch = run(doc)
    main, other = orch.loop("main"), orch.loop("other")
    assert main.wait_for_state(LoopState.STOPPED, timeout=WAIT)
    assert main.status().iterations == 2
    seen = other.status().iterations
    assert other.wait_for(lambda s: s.iterations > seen + 10, WAIT)
    assert other.state is LoopState.RUNNING


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("kind", ["blocking", "nonBlocking"])
def test_a_loop_stopped_by_a_node_says_which_and_why(
    run: Any, journal: str, pool: str, kind: str
) -> None:
    """The loop's reason named only the drain; the cause was left in the node's lastError."""
    cls = "Step" if kind == "blocking" else "Effect"
    b = {**node("b", cls, kind, journal=journal, tag="b", fail_on=[2]), "onError": "stopLoop"}
    orch = run(chain(journal, pool, b, count=None))
    main = orch.loop("main")
    assert main.wait_for_state(LoopState.STOPPED, timeout=WAIT)
    reason = main.status().reason or ""
    assert reason.startswith(
        "stopped by node 'b' (onError: stopLoop): ValueError: b: failure at iteration 2; drained "
    ), reason
    assert reason.endswith("non-blocking call(s)"), reason
    # what `ostinato status` and the hub's /status show: the orchestrator's view of the loop
    assert orch.status().loop("main").reason == reason


@pytest.mark.parametrize("pool", POOLS)
def test_a_loop_paused_by_a_node_says_which_and_why(run: Any, journal: str, pool: str) -> None:
    b = {
        **node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[2]),
        "onError": "pauseLoop",
    }
    orch = run(chain(journal, pool, b, count=None))
    main = orch.loop("main")
    assert main.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    assert main.status().reason == (
        "paused by node 'b' (onError: pauseLoop): ValueError: b: failure at iteration 2"
    )


@pytest.mark.parametrize("pool", POOLS)
def test_producer_errors_are_retried_then_skipped(run: Any, journal: str, pool: str) -> None:
    doc = workflow(
        loop(
            "main",
            pool,
            {
                **node("p", "Count", journal=journal, tag="produce", count=6, fail_on=[3]),
                "retry": {"maxAttempts": 1},
            },
            node("a", "Step", "blocking", journal=journal, tag="a"),
        )
    )
    orch = run(doc)
    assert orch.wait(timeout=WAIT)
    status = orch.status().loop("main")
    assert status.node("p").errors == 1
    assert status.failed_iterations == 1
    # The failed call counts as (failed) iteration 3; the producer's 3rd value never came.
    ends = [x for x in read(journal) if x.startswith("a end")]
    assert ends == [f"a end {i} payload={i}" for i in (1, 2, 4, 5, 6)]
    assert status.iterations == 6


@pytest.mark.parametrize("pool", POOLS)
def test_non_blocking_errors_are_reported_and_never_fail_the_iteration(
    run: Any, journal: str, pool: str
) -> None:
    fx = {
        **node("fx", "Effect", "nonBlocking", journal=journal, tag="fx", fail_on=[2, 4]),
        "retry": {"maxAttempts": 2, "initialBackoffSeconds": 0.001},
    }
    orch = run(chain(journal, pool, fx))
    assert orch.wait(timeout=WAIT)
    status = orch.status().loop("main")
    assert status.failed_iterations == 0
    assert [x.split()[2] for x in read(journal) if x.startswith("c end")] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    fx_status = status.node("fx")
    assert (fx_status.errors, fx_status.retries, fx_status.calls) == (2, 2, 5)
    assert fx_status.last_error is not None
    assert "failure at iteration" in fx_status.last_error


@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_health_is_retrying_during_retries(run: Any, journal: str, pool: str) -> None:
    gate = GATES.setdefault(f"retry-{pool}", threading.Event())
    gate.clear()
    b = {
        **node(
            "b", "Step", "blocking", journal=journal, tag="b", fail_times=1, gate=f"retry-{pool}"
        ),
        "retry": {"maxAttempts": 2, "initialBackoffSeconds": 0},
    }
    orch = run(chain(journal, pool, b, count=1))
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.nodes and s.node("b").health is NodeHealth.RETRYING, WAIT)
    gate.set()
    assert orch.wait(timeout=WAIT)
    assert main.status().node("b").health is NodeHealth.HEALTHY


@pytest.mark.parametrize("pool", POOLS)
def test_circuit_breaker_pauses_then_resumes_by_itself(run: Any, journal: str, pool: str) -> None:
    b = node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[2, 3, 4])
    doc = chain(
        journal, pool, b, count=8, circuitBreaker={"consecutiveFailures": 3, "cooldownSeconds": 0.2}
    )
    orch = run(doc)
    main = orch.loop("main")
    assert main.wait_for(lambda s: s.state is LoopState.PAUSED, WAIT)
    assert "circuit open" in (main.status().reason or "")
    assert main.status().iterations == 4
    assert orch.wait(timeout=WAIT)  # resumed after the cool-down and ran to the end
    final = main.status()
    assert final.iterations == 8
    assert final.failed_iterations == 3


def test_manual_pause_during_cooldown_wins(run: Any, journal: str) -> None:
    b = node("b", "Step", "blocking", journal=journal, tag="b", fail_on=[1])
    doc = chain(
        journal,
        "thread",
        b,
        count=5,
        circuitBreaker={"consecutiveFailures": 1, "cooldownSeconds": 0.2},
    )
    orch = run(doc)
    main = orch.loop("main")
    assert main.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    main.pause()  # an operator's pause must not be lifted by the breaker's timer
    assert main.wait_for(lambda s: "by request" in (s.reason or ""), WAIT)
    assert not main.wait_for(lambda s: s.state is LoopState.RUNNING, 0.5)
    main.resume()
    assert orch.wait(timeout=WAIT)


@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_setup_failure_is_an_error_and_other_loops_keep_running(
    run: Any, journal: str, pool: str
) -> None:
    doc = workflow(
        loop(
            "bad",
            pool,
            node("p", "Count", journal=journal, tag="bad"),
            node("x", "BadSetup", "blocking", journal=journal, tag="x"),
        ),
        loop("good", "thread", node("p", "Count", journal=journal, tag="good", count=50)),
    )
    orch = run(doc)
    bad = orch.loop("bad")
    assert bad.wait_for_state(LoopState.ERROR, timeout=WAIT)
    assert "cannot open the device" in (bad.status().last_error or "")
    assert orch.loop("good").join(WAIT)
    assert orch.status().loop("good").iterations == 50
    assert "bad teardown" in read(journal)  # what was set up is torn down
