"""Status from the hub's answer and the pods: phase, conditions, summaries, the size cap."""

from __future__ import annotations

import json
from typing import Any

from ostinato import LoopStatus, NodeStatus, Workflow, WorkflowStatus
from ostinato_operator._status import Observation, compute_status, fit, invalid_status
from ostinato_operator._status_models import Phase, WorkflowResourceStatus

from .support import as_object, example

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z"
URL = "http://counter-hub.ns1.svc:8080"


def _wf(**changes: Any) -> Workflow:
    doc = as_object(example("k8s-counter.yaml"))
    doc["spec"].update(changes)
    return Workflow.model_validate(doc)


def _hub(writer: str, reader: str, **reader_extra: Any) -> WorkflowStatus:
    return WorkflowStatus.model_validate(
        {
            "workflow": "counter",
            "loops": [
                LoopStatus(name="writer", pool="thread", state=writer, iterations=100),
                LoopStatus(
                    name="reader", pool="asyncio", state=reader, iterations=90, **reader_extra
                ),
            ],
            "queues": [{"name": "numbers", "depth": 10, "enqueued": 100, "delivered": 90}],
        }
    )


def _pods(*loops: str) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {"name": f"counter-{lp}-0", "labels": {"ostinato.dev/loop": lp}},
            "status": {"phase": "Pending"},
        }
        for lp in loops
    ]


def _conds(status: WorkflowResourceStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_no_hub_yet_is_pending_and_progressing() -> None:
    obs = Observation(None, {}, "connection refused", _pods("writer", "reader"))
    st = compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL)
    assert st.phase is Phase.PENDING
    assert _conds(st) == {
        "Ready": ("False", "HubStarting"),
        "Progressing": ("True", "HubStarting"),
        "Degraded": ("False", "AsExpected"),
    }
    assert st.ready == "0/2"
    assert [lp.state for lp in st.loops] == ["unknown", "unknown"]
    assert [lp.pods for lp in st.loops] == [1, 1]


def test_running_then_paused_then_hub_lost() -> None:
    rates = {("writer", 0): 50.0, ("reader", 0): 49.5}
    running = compute_status(
        _wf(),
        1,
        Observation(_hub("running", "running"), rates, None, _pods("writer", "reader")),
        WorkflowResourceStatus(),
        T0,
        URL,
    )
    assert running.phase is Phase.RUNNING
    assert _conds(running)["Ready"] == ("True", "AllLoopsReady")
    assert running.ready == "2/2"
    assert running.iterations_per_second == 99.5
    assert running.queues[0].depth == 10
    ready_since = running.conditions[0].last_transition_time

    paused = compute_status(
        _wf(state="paused"),
        2,
        Observation(_hub("paused", "paused"), {}, None, _pods("writer", "reader")),
        running,
        T1,
        URL,
    )
    assert paused.phase is Phase.PAUSED
    assert paused.observed_generation == 2
    assert [(lp.desired_state, lp.state, lp.state_since) for lp in paused.loops] == [
        ("paused", "paused", T1),
        ("paused", "paused", T1),
    ]
    assert paused.conditions[0].last_transition_time == ready_since  # still Ready=True

    lost = compute_status(
        _wf(), 2, Observation(None, {}, "timed out", _pods("writer", "reader")), paused, T2, URL
    )
    assert lost.phase is Phase.DEGRADED
    assert _conds(lost)["Degraded"] == ("True", "HubUnreachable")
    assert _conds(lost)["Ready"] == ("False", "HubUnreachable")
    assert lost.conditions[0].last_transition_time == T2


def test_a_loop_in_error_degrades_and_its_error_is_cut() -> None:
    hub = _hub("running", "error", last_error="x" * 1000, failed_iterations=3)
    st = compute_status(
        _wf(), 1, Observation(hub, {}, None, _pods()), WorkflowResourceStatus(), T0, URL
    )
    assert st.phase is Phase.DEGRADED
    reader = st.loops[1]
    assert reader.state == "error"
    assert reader.errors == 3
    assert reader.last_error is not None
    assert len(reader.last_error) == 200
    assert st.errors == 3


def test_missing_replicas_keep_a_loop_pending() -> None:
    hub = WorkflowStatus(
        workflow="counter", loops=[LoopStatus(name="writer", pool="thread", state="running")]
    )
    st = compute_status(_wf(), 1, Observation(hub, {}, None, []), WorkflowResourceStatus(), T0, URL)
    assert st.phase is Phase.PENDING
    assert [lp.state for lp in st.loops] == ["running", "pending"]
    assert st.ready == "1/2"


def test_everything_stopped() -> None:
    hub = _hub("stopped", "stopped")
    st = compute_status(
        _wf(state="stopped"), 3, Observation(hub, {}, None, []), WorkflowResourceStatus(), T0, URL
    )
    assert st.phase is Phase.STOPPED
    assert st.ready == "0/0"
    assert [lp.replicas for lp in st.loops] == [0, 0]


def test_node_summaries_take_the_worst_health_and_sum_counts() -> None:
    doc = as_object(example("pipeline.yaml"))
    wf = Workflow.model_validate(doc)
    loops = [
        LoopStatus(
            name="archive",
            replica=r,
            pool="process",
            state="running",
            nodes=[
                NodeStatus(
                    name="store", kind="blocking", calls=10, errors=e, health=h, last_error=m
                )
            ],
        )
        for r, (e, h, m) in enumerate([(0, "healthy", None), (2, "failing", "disk full")])
    ]
    hub = WorkflowStatus(workflow="pipeline", loops=loops)
    st = compute_status(wf, 1, Observation(hub, {}, None, []), WorkflowResourceStatus(), T0, URL)
    store = next(n for n in st.nodes if n.loop == "archive" and n.name == "store")
    assert (store.health, store.calls, store.errors, store.last_error) == (
        "failing",
        20,
        2,
        "disk full",
    )


def test_fit_drops_node_details_first_and_says_so() -> None:
    doc = as_object(example("pipeline.yaml"))
    wf = Workflow.model_validate(doc)
    loops = [
        LoopStatus(
            name="sensor",
            pool="thread",
            state="running",
            last_error="e" * 150,
            nodes=[
                NodeStatus(name=f"n{i}", kind="blocking", last_error="z" * 150) for i in range(200)
            ],
        )
    ]
    hub = WorkflowStatus(workflow="pipeline", loops=loops)
    st = compute_status(wf, 1, Observation(hub, {}, None, []), WorkflowResourceStatus(), T0, URL)
    small = fit(st, 8192)
    assert len(json.dumps(small, separators=(",", ":")).encode()) <= 8192
    assert small["nodes"] == []
    assert small["loops"][0]["name"] == "sensor"
    assert "node details (200 nodes)" in small["truncated"]
    assert fit(st, 10**7)["truncated"] is None


def test_invalid_spec_status_names_the_field() -> None:
    st = invalid_status(
        4,
        "invalid workflow (1 error(s)):\n  spec.loops[1].name: duplicate",
        WorkflowResourceStatus(),
        T0,
    )
    assert st.phase is Phase.FAILED
    assert _conds(st)["Ready"] == ("False", "InvalidSpec")
    assert "spec.loops[1].name" in st.conditions[0].message


def _succeeded(loop: str, replica: int = 0) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"counter-{loop}-{replica}",
            "labels": {"ostinato.dev/loop": loop, "ostinato.dev/replica": str(replica)},
        },
        "status": {"phase": "Succeeded"},
    }


def test_loops_that_ended_by_themselves_are_finished_not_waited_for() -> None:
    obs = Observation(_hub("finished", "running"), {}, None, _pods("reader"))
    st = compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL)
    assert [lp.state for lp in st.loops] == ["finished", "running"]
    # The finished writer is not a loop the workflow waits for.
    assert st.phase is Phase.RUNNING
    assert st.ready == "2/2"

    done = Observation(_hub("finished", "finished"), {}, None, [])
    st = compute_status(_wf(), 1, done, st, T1, URL)
    assert st.phase is Phase.FINISHED
    assert _conds(st) == {
        "Ready": ("False", "AllLoopsFinished"),
        "Progressing": ("False", "Finished"),
        "Degraded": ("False", "AsExpected"),
    }
    assert "writer" in st.conditions[0].message


def test_a_succeeded_pod_is_finished_even_when_a_restarted_hub_never_heard_of_it() -> None:
    # The hub restarted after the writer's pod ended: it reports the writer as not connected.
    hub = WorkflowStatus.model_validate(
        {
            "workflow": "counter",
            "loops": [
                LoopStatus(name="writer", pool="thread", state="pending", reason="not connected"),
                LoopStatus(name="reader", pool="asyncio", state="running", iterations=5),
            ],
        }
    )
    obs = Observation(hub, {}, None, [_succeeded("writer"), *_pods("reader")])
    st = compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL)
    assert [lp.state for lp in st.loops] == ["finished", "running"]
    assert st.phase is Phase.RUNNING
    # And with the hub away, the pods alone still say so.
    away = Observation(None, {}, "connection refused", [_succeeded("writer"), _succeeded("reader")])
    assert compute_status(_wf(), 1, away, st, T1, URL).phase is Phase.FINISHED
