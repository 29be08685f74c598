"""Status from the hub's answer and the pods: phase, conditions, summaries, the size cap."""

from __future__ import annotations

import json
from typing import Any

from ostinato import LoopStatus, NodeStatus, Workflow, WorkflowStatus
from ostinato.lowlevel import MAX_ERROR_CHARS
from ostinato_operator._rates import hub_sample, rates_between
from ostinato_operator._status import Observation, compute_status, fit, invalid_status
from ostinato_operator._status_models import MAX_MESSAGE_CHARS, Phase, WorkflowResourceStatus

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
    assert len(reader.last_error) == MAX_ERROR_CHARS  # the runtime's length, as the hub sends
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
    assert st.message == "InvalidSpec: invalid workflow (1 error(s)): spec.loops[1].name: duplicate"


def _succeeded(loop: str, replica: int = 0) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"counter-{loop}-{replica}",
            "labels": {"ostinato.dev/loop": loop, "ostinato.dev/replica": str(replica)},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 0, "message": "finished: reached it"}}}
            ],
        },
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


# -- the pods' own failures ------------------------------------------------------------------------

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/ostinato/_nodes.py", line 88, in load\n'
    "    module = importlib.import_module(path)\n"
    "ModuleNotFoundError: No module named 'mypkg'\n"
)


def _pod(
    name: str,
    component: str,
    loop: str | None = None,
    *,
    container: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    phase: str = "Pending",
) -> dict[str, Any]:
    """A pod as the API server returns it after the kubelet (or the scheduler) wrote its status."""
    labels = {"ostinato.dev/workflow": "counter", "app.kubernetes.io/component": component}
    if loop is not None:
        labels.update({"ostinato.dev/loop": loop, "ostinato.dev/replica": "0"})
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if container is not None:
        status["containerStatuses"] = [container]
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": labels}, "status": status}


def _crash_looping(name: str, restarts: int = 4, log: str = TRACEBACK) -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.example/ostinato:1.0",
        "imageID": "",
        "ready": False,
        "restartCount": restarts,
        "started": False,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 40s restarting failed container={name} pod=x",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": log,
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:01Z",
            }
        },
    }


def _waiting(name: str, reason: str, message: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}},
        "lastState": {},
    }


def _unschedulable(message: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": T0,
        }
    ]


HUB_POD = "counter-hub-6d9f7c8b5d-x2k4q"
REFUSED = "http://counter-hub.ns1.svc:8080/status: [Errno 111] Connection refused"


def _degraded(status: WorkflowResourceStatus) -> tuple[str, str, str]:
    cond = next(c for c in status.conditions if c.type == "Degraded")
    return cond.status, cond.reason, cond.message


def test_a_crash_looping_hub_is_degraded_with_its_last_log_line() -> None:
    # Reproduces the issue: a class that cannot be imported crash-loops the hub and every loop
    # pod; status said only "HubStarting: the hub does not answer ... Connection refused".
    pods = [
        _pod(HUB_POD, "hub", container=_crash_looping("hub")),
        _pod("counter-writer-0", "loop", "writer", container=_crash_looping("loop", 3)),
        _pod("counter-reader-0", "loop", "reader", container=_crash_looping("loop", 3)),
    ]
    st = compute_status(
        _wf(), 1, Observation(None, {}, REFUSED, pods), WorkflowResourceStatus(), T0, URL
    )
    assert st.phase is Phase.DEGRADED
    status, reason, message = _degraded(st)
    assert (status, reason) == ("True", "HubCrashLooping")
    assert _conds(st)["Ready"] == ("False", "HubCrashLooping")
    assert f"pod {HUB_POD} container hub" in message
    assert "exit code 1" in message
    assert "4 restarts" in message
    assert "ModuleNotFoundError: No module named 'mypkg'" in message
    assert "Traceback" not in message  # the last log line, not the whole tail
    # The loops' own crash loops are counted in the same message and named per loop.
    assert "2 more" in message
    assert "LoopCrashLooping" in message
    assert st.message is not None
    assert st.message.startswith("HubCrashLooping: pod ")
    writer = st.loops[0]
    assert writer.message is not None
    assert writer.message.startswith("LoopCrashLooping: ")
    assert "No module named 'mypkg'" in writer.message


def test_a_long_log_line_is_cut() -> None:
    pods = [_pod(HUB_POD, "hub", container=_crash_looping("hub", log="E" * 5000))]
    st = compute_status(
        _wf(), 1, Observation(None, {}, REFUSED, pods), WorkflowResourceStatus(), T0, URL
    )
    _, reason, message = _degraded(st)
    assert reason == "HubCrashLooping"
    assert len(message) <= MAX_MESSAGE_CHARS
    assert message.endswith("…")


def test_an_invalid_image_reference_is_named() -> None:
    bad = "registry.example/Ostinato:1.0"
    text = (
        f'Failed to apply default image tag "{bad}": couldn\'t parse image reference '
        f'"{bad}": invalid reference format: repository name must be lowercase'
    )
    pods = [_pod(HUB_POD, "hub", container=_waiting("hub", "InvalidImageName", text, bad))]
    st = compute_status(
        _wf(), 1, Observation(None, {}, REFUSED, pods), WorkflowResourceStatus(), T0, URL
    )
    _, reason, message = _degraded(st)
    assert reason == "HubImagePullFailed"
    assert f"pod {HUB_POD} container hub" in message
    assert "InvalidImageName" in message
    assert "repository name must be lowercase" in message


def test_a_loop_pod_that_cannot_pull_its_image_degrades_a_running_workflow() -> None:
    image = "registry.example/team/reader:2.0"
    pods = [
        _pod("counter-writer-0", "loop", "writer", phase="Running"),
        _pod(
            "counter-reader-0",
            "loop",
            "reader",
            container=_waiting(
                "loop", "ImagePullBackOff", f'Back-off pulling image "{image}"', image
            ),
        ),
    ]
    hub = _hub("running", "pending")
    st = compute_status(
        _wf(), 1, Observation(hub, {}, None, pods), WorkflowResourceStatus(), T0, URL
    )
    assert st.phase is Phase.DEGRADED
    _, reason, message = _degraded(st)
    assert reason == "LoopImagePullFailed"
    assert "pod counter-reader-0 container loop" in message
    assert image in message
    assert st.loops[1].message is not None
    assert "ImagePullBackOff" in st.loops[1].message
    assert st.loops[0].message is None


def test_an_unschedulable_loop_pod_is_named_with_the_schedulers_words() -> None:
    why = "0/3 nodes are available: 3 Insufficient cpu."
    pods = [_pod("counter-reader-0", "loop", "reader", conditions=_unschedulable(why))]
    st = compute_status(
        _wf(),
        1,
        Observation(_hub("running", "pending"), {}, None, pods),
        WorkflowResourceStatus(),
        T0,
        URL,
    )
    _, reason, message = _degraded(st)
    assert reason == "LoopUnschedulable"
    assert message == f"pod counter-reader-0 cannot be scheduled: {why}"


def _pvc(phase: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"]}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": "counter-hub-state"}, "spec": spec, "status": {"phase": phase}}


def test_a_pending_volume_is_named_when_the_hub_cannot_be_scheduled() -> None:
    why = "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."
    pods = [_pod(HUB_POD, "hub", conditions=_unschedulable(why))]
    obs = Observation(None, {}, REFUSED, pods, volume=_pvc("Pending", "fast-ssd"))
    st = compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL)
    _, reason, message = _degraded(st)
    assert reason == "HubVolumePending"
    assert "PersistentVolumeClaim counter-hub-state is Pending" in message
    assert "storageClassName fast-ssd" in message
    assert why in message
    # No storage class named: the message says the cluster's default was asked for.
    obs = Observation(None, {}, REFUSED, pods, volume=_pvc("Pending", None))
    _, _, message = _degraded(compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL))
    assert "the cluster's default StorageClass" in message


def test_a_pending_volume_alone_is_no_problem_before_the_scheduler_spoke() -> None:
    # WaitForFirstConsumer: the claim is Pending until the hub pod is scheduled.
    obs = Observation(None, {}, REFUSED, [_pod(HUB_POD, "hub")], volume=_pvc("Pending", None))
    st = compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL)
    assert st.phase is Phase.PENDING
    assert _conds(st)["Ready"] == ("False", "HubStarting")
    assert st.message is not None
    assert st.message.startswith("HubStarting: ")


def test_a_queue_read_by_a_loop_and_written_by_none_is_a_warning() -> None:
    # Reproduces the issue: the reader was Ready with 0 iterations forever, with no warning.
    doc = as_object(example("k8s-counter.yaml"))
    doc["spec"]["loops"] = [lp for lp in doc["spec"]["loops"] if lp["name"] == "reader"]
    wf = Workflow.model_validate(doc)
    hub = WorkflowStatus(
        workflow="counter", loops=[LoopStatus(name="reader", pool="asyncio", state="running")]
    )
    st = compute_status(wf, 1, Observation(hub, {}, None, []), WorkflowResourceStatus(), T0, URL)
    # It runs as asked, so it is Ready; Degraded says that nothing will ever come.
    assert st.phase is Phase.RUNNING
    assert _conds(st)["Ready"] == ("True", "AllLoopsReady")
    status, reason, message = _degraded(st)
    assert (status, reason) == ("True", "QueueWithoutWriter")
    assert message == "queue numbers is read by loop reader but written by no loop"
    assert st.message == f"QueueWithoutWriter: {message}"


def test_a_healthy_workflow_has_no_message() -> None:
    obs = Observation(_hub("running", "running"), {}, None, _pods("writer", "reader"))
    st = compute_status(_wf(), 1, obs, WorkflowResourceStatus(), T0, URL)
    assert st.phase is Phase.RUNNING
    assert st.message is None
    assert _degraded(st) == ("False", "AsExpected", "")


# -- counts while the hub is away, rates across a hub restart --------------------------------------


def test_the_last_known_counts_stay_while_the_hub_is_away() -> None:
    # Reproduces the issue: while the hub was down every loop showed 0 iterations.
    rates = {("writer", 0): 50.0, ("reader", 0): 49.5}
    hub = _hub("running", "running", failed_iterations=2, last_error="boom")
    up = compute_status(
        _wf(), 1, Observation(hub, rates, None, _pods()), WorkflowResourceStatus(), T0, URL
    )
    assert [lp.counts_as_of for lp in up.loops] == [None, None]

    away = Observation(None, {}, "timed out", _pods("writer", "reader"))
    down = compute_status(_wf(), 1, away, up, T1, URL)
    assert [(lp.state, lp.iterations, lp.errors) for lp in down.loops] == [
        ("unknown", 100, 0),
        ("unknown", 90, 2),
    ]
    assert down.loops[1].last_error == "boom"
    # Marked as last known, from the hub's last answer; no rate without the hub.
    assert [lp.counts_as_of for lp in down.loops] == [T0, T0]
    assert [lp.iterations_per_second for lp in down.loops] == [None, None]
    assert down.iterations_per_second is None
    assert down.errors == 2
    still = compute_status(_wf(), 1, away, down, T2, URL)
    assert [(lp.iterations, lp.counts_as_of) for lp in still.loops] == [(100, T0), (90, T0)]

    back = compute_status(_wf(), 1, Observation(hub, {}, None, _pods()), still, T2, URL)
    assert [lp.counts_as_of for lp in back.loops] == [None, None]


def test_no_counts_to_keep_before_the_hub_ever_answered() -> None:
    first = compute_status(
        _wf(), 1, Observation(None, {}, REFUSED, _pods()), WorkflowResourceStatus(), T0, URL
    )
    again = compute_status(_wf(), 1, Observation(None, {}, REFUSED, _pods()), first, T1, URL)
    assert [(lp.iterations, lp.counts_as_of) for lp in again.loops] == [(0, None), (0, None)]


def _running_hub(hub_pod_restarts: int) -> list[dict[str, Any]]:
    container = {"name": "hub", "ready": True, "restartCount": hub_pod_restarts, "state": {}}
    return [_pod(HUB_POD, "hub", container=container, phase="Running")]


def _counts(writer_state: str, writer: int) -> WorkflowStatus:
    return WorkflowStatus(
        workflow="counter",
        loops=[LoopStatus(name="writer", pool="thread", state=writer_state, iterations=writer)],
    )


def test_a_rate_comes_from_two_reads_of_one_hub_incarnation() -> None:
    # Reproduces the issue: right after a hub restart the rate read 2,936/s for a 20/s loop.
    # The restarted hub first lists the writer as not connected (0), then with its whole count.
    before = hub_sample(_counts("running", 29_300), _running_hub(0), 100.0)
    restarted = hub_sample(_counts("pending", 0), _running_hub(1), 105.0)
    reconnected = hub_sample(_counts("running", 29_460), _running_hub(1), 110.0)
    later = hub_sample(_counts("running", 29_560), _running_hub(1), 115.0)
    assert before.incarnation != restarted.incarnation
    assert rates_between(None, before) == {}
    assert rates_between(before, restarted) == {}  # another hub
    assert rates_between(restarted, reconnected) == {}  # not connected in the first read
    assert rates_between(reconnected, later) == {("writer", 0): 20.0}
    # A reconnection the operator never saw in between: still two different hubs.
    assert rates_between(before, reconnected) == {}
    # A loop process that restarted counts from 0 again: no rate for that round.
    restarted_loop = hub_sample(_counts("running", 40), _running_hub(1), 120.0)
    assert rates_between(later, restarted_loop) == {}
    # Without a hub pod (a hub outside the cluster) the reads still need the replica connected.
    assert rates_between(
        hub_sample(_counts("running", 10), [], 1.0), hub_sample(_counts("running", 60), [], 3.5)
    ) == {("writer", 0): 20.0}
