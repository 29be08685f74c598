"""GET /console/data against the status model: the same loops, replicas, nodes and queues as
/status, figures that add the replicas up, the document's graph, a bounded history; and the
page and its assets served from the package without a token in them."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ostinato import (
    DesiredState,
    LoopState,
    LoopStatus,
    NodeHealth,
    NodeStatus,
    QueueStatus,
    WorkflowStatus,
    load_workflow,
)
from ostinato._hosting._distributed import SpecFileWatch
from ostinato._model._status import (
    AutoscaleStatus,
    DurationHistogram,
    breaker_open_reason,
    lost_reason,
)
from ostinato._observe._console import (
    ASSETS,
    Console,
    ConsoleData,
    ConsoleHistory,
    ConsoleSettings,
    percentile,
)
from ostinato._observe._http import HttpSettings, ObservabilityServer
from tests.observability.conftest import get

from .conftest import ostinato
from .workflow import document, names

TOKEN = "console-test-token-0123456789abcdef"


def _replica(name: str, replica: int, **fields: object) -> LoopStatus:
    return LoopStatus.model_validate({"name": name, "replica": replica, "pool": "thread", **fields})


class FakeSource:
    """The console workflow's status, set by the test."""

    def __init__(self) -> None:
        one = DurationHistogram(counts=[0] * 6 + [10] + [0] * 11)  # ten calls <= 1 ms
        self.value = WorkflowStatus(
            workflow="console-demo",
            loops=[
                _replica(
                    "source",
                    0,
                    state=LoopState.RUNNING,
                    desired_state=DesiredState.RUNNING,
                    iterations=40,
                    nodes=[
                        NodeStatus(
                            name="tick",
                            kind="producer",
                            calls=40,
                            counters={"missedTicks": 3, "lateTicks": 2, "lateMicroseconds": 3000},
                        ),
                        NodeStatus(
                            name="check",
                            kind="blocking",
                            calls=40,
                            errors=4,
                            health=NodeHealth.FAILING,
                            last_error="RuntimeError: tripwire t is set",
                            duration=one,
                        ),
                    ],
                ),
                _replica("watcher", 0, state=LoopState.PAUSED),
                _replica(
                    "workers",
                    0,
                    state=LoopState.RUNNING,
                    iterations=7,
                    nodes=[NodeStatus(name="store", kind="blocking", calls=7, duration=one)],
                ),
                _replica(
                    "workers",
                    1,
                    state=LoopState.PAUSED,
                    reason=breaker_open_reason(50, 5.0),
                    iterations=5,
                    nodes=[
                        NodeStatus(
                            name="store", kind="blocking", calls=5, health=NodeHealth.RETRYING
                        )
                    ],
                ),
            ],
            queues=[QueueStatus(name="events", depth=12, enqueued=40, delivered=28, dropped=2)],
        )

    def status(self) -> WorkflowStatus:
        return self.value

    def not_ready(self) -> str | None:
        return None


@pytest.fixture
def doc(tmp_path: Path) -> dict[str, object]:
    return document(tmp_path / "tripwire")


@pytest.fixture
def served(doc: dict[str, object]) -> Iterator[tuple[ObservabilityServer, FakeSource]]:
    source = FakeSource()
    console = Console(load_workflow(doc))
    server = ObservabilityServer(source, port=0, control_token=TOKEN, console=console).start()
    try:
        yield server, source
    finally:
        server.close()


def test_the_data_endpoint_is_the_status_model_and_the_graph(
    served: tuple[ObservabilityServer, FakeSource], doc: dict[str, object]
) -> None:
    server, source = served
    reply = get(server.url + "/console/data")
    assert reply.code == 200, reply.body
    data = ConsoleData.model_validate_json(reply.body)
    status = WorkflowStatus.model_validate(get(server.url + "/status").json())
    # The same status as /status serves (the rates are the server's own, None this early).
    assert data.status.model_dump(exclude={"loops"}) == status.model_dump(exclude={"loops"})
    assert [(lp.name, lp.replica, lp.state) for lp in data.status.loops] == [
        (lp.name, lp.replica, lp.state) for lp in source.value.loops
    ]
    loops, nodes, queues = names(doc)  # type: ignore[arg-type]
    assert {g.name for g in data.graph.loops} == loops == {f.name for f in data.loops}
    assert {(g.name, n.name) for g in data.graph.loops for n in (g.producer, *g.nodes)} == nodes
    assert {q.name for q in data.graph.queues} == queues == {f.name for f in data.queues}
    events = next(q for q in data.graph.queues if q.name == "events")
    jobs = next(q for q in data.graph.queues if q.name == "jobs")
    assert (events.mode, jobs.mode) == ("broadcast", "work")
    assert [(e.loop, e.node) for e in events.writers] == [("source", "publish")]
    assert [(e.loop, e.node) for e in jobs.readers] == [("workers", "jobs")]
    graph_source = next(g for g in data.graph.loops if g.name == "source")
    assert [n.kind for n in graph_source.nodes] == ["blocking", "blocking", "nonBlocking"]
    assert next(g for g in data.graph.loops if g.name == "workers").replicas == 2


def test_figures_add_the_replicas_up_and_keep_the_worst(
    served: tuple[ObservabilityServer, FakeSource],
) -> None:
    server, _source = served
    data = ConsoleData.model_validate(get(server.url + "/console/data").json())
    by_name = {f.name: f for f in data.loops}
    source, workers = by_name["source"], by_name["workers"]
    assert (source.state, source.missed_ticks, source.breaker) == ("running", 3, None)
    assert (source.late_ticks, source.mean_lateness_seconds) == (2, pytest.approx(0.0015))
    check = next(n for n in source.nodes if n.name == "check")
    assert check.health is NodeHealth.FAILING
    assert check.last_error == "RuntimeError: tripwire t is set"
    assert (check.calls, check.errors, check.p50_seconds, check.p99_seconds) == (40, 4, 1e-3, 1e-3)
    # Replicas: the worst state (paused over running), summed counts, the worst health.
    assert (workers.state, workers.iterations, workers.breaker) == ("paused", 12, "open")
    assert workers.replica_states == ["running", "paused"]
    store = workers.nodes[0]
    assert (store.calls, store.health) == (12, NodeHealth.RETRYING)
    events = next(q for q in data.queues if q.name == "events")
    assert (events.depth, events.capacity, events.dropped) == (12, 200, 2)
    assert data.refresh_seconds <= 2


def test_the_history_is_bounded_and_rates_come_from_it() -> None:
    history = ConsoleHistory(seconds=10, every=1, span=3)
    for t in range(50):
        # Two replicas of "a", 5 iterations a second between them; "b" pending after t=45.
        status = WorkflowStatus(
            workflow="w",
            loops=[
                _replica("a", 0, state=LoopState.RUNNING, iterations=2 * t),
                _replica("a", 1, state=LoopState.RUNNING, iterations=3 * t),
                _replica("b", 0, state=LoopState.PENDING if t >= 45 else LoopState.RUNNING),
            ],
            queues=[QueueStatus(name="q", depth=t, enqueued=10 * t, delivered=8 * t)],
        )
        history.sample(status, now=1000.0 + t)
    kept = history.history()
    assert len(kept.times) == 10  # the bound: seconds / every
    assert kept.times == [1000.0 + t for t in range(40, 50)]
    assert kept.queues["q"] == list(range(40, 50))
    assert kept.loops["a"] == [5.0] * 10
    assert kept.loops["b"] == [0.0] * 5 + [None] * 5  # a pending replica's 0 is not a count
    assert history.loop_rate("a") == 5.0
    assert history.queue_rates("q") == pytest.approx((10.0, 8.0))


def test_a_count_that_went_down_has_no_rate() -> None:
    history = ConsoleHistory(seconds=10, every=1, span=3)
    for t, iterations in enumerate([100, 110, 5, 15]):  # restarted between the 2nd and 3rd
        status = WorkflowStatus(
            workflow="w", loops=[_replica("a", 0, state=LoopState.RUNNING, iterations=iterations)]
        )
        history.sample(status, now=float(t))
    assert history.history().loops["a"] == [None, 10.0, None, None]
    assert history.loop_rate("a") is None  # 15 since t=0 (3 s back) went down from 100


def test_percentiles_are_bucket_bounds() -> None:
    assert percentile(DurationHistogram(), 0.5) is None
    counts = [0] * 18
    counts[0], counts[10] = 50, 50  # half <= 1 µs, half <= 0.1 s
    histogram = DurationHistogram(counts=counts)
    assert (percentile(histogram, 0.5), percentile(histogram, 0.9)) == (1e-6, 0.1)


def test_page_and_assets_are_served_without_any_token(
    served: tuple[ObservabilityServer, FakeSource],
) -> None:
    server, _source = served
    for name, media in ASSETS.items():
        path = "/console/" if name == "index.html" else f"/console/{name}"
        reply = get(server.url + path)
        assert (reply.code, reply.content_type) == (200, media), path
        assert TOKEN not in reply.body
    assert "/console/console.js" in get(server.url + "/console/").body
    with urllib.request.urlopen(server.url + "/console/", timeout=10) as page:
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
    assert TOKEN not in get(server.url + "/console/data").body


def test_data_asks_for_the_token_when_reads_do(doc: dict[str, object]) -> None:
    console = Console(load_workflow(doc))
    settings = HttpSettings(token_for_reads=True)
    with ObservabilityServer(
        FakeSource(), port=0, settings=settings, control_token=TOKEN, console=console
    ) as server:
        refused = get(server.url + "/console/data")
        assert refused.code == 401
        assert "error" in json.loads(refused.body)
        assert get(server.url + "/console/").code == 200  # the page has nothing to hide


def test_on_kubernetes_the_graph_says_how_to_patch_instead_of_controls(
    doc: dict[str, object],
) -> None:
    console = Console(load_workflow(doc), ConsoleSettings(managed_by_operator=True))
    data = console.data(FakeSource().status())
    assert data.managed_by_operator
    assert data.graph.patch is not None
    # As docs/kubernetes.md writes them.
    assert data.graph.patch == (
        "kubectl ostinato pause|resume|stop console-demo\n# or, without the plugin:\n"
        """kubectl patch owf console-demo --type=merge -p '{"spec":{"state":"STATE"}}'"""
    )
    assert data.graph.loops[2].patch == (
        "kubectl ostinato pause|resume|stop console-demo workers\n"
        "# or, without the plugin:\n"
        "kubectl patch owf console-demo --type=json -p "
        """'[{"op":"replace","path":"/spec/loops/2/state","value":"STATE"}]'"""
    )


def test_ostinato_run_ui_prints_the_consoles_url_on_loopback(tmp_path: Path) -> None:
    path = tmp_path / "console-demo.json"
    path.write_text(json.dumps(document(tmp_path / "tripwire")))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    args = ("run", str(path), "--ui", "--status-every", "0", "--live", "never")
    with ostinato(*args, "--control-token-file", str(token_file)) as (url, output):
        assert url.startswith("http://127.0.0.1:"), url
        base = url.removesuffix("/console/")
        home = get(base + "/")  # redirected to the page
        assert (home.code, home.content_type) == (200, ASSETS["index.html"])
        data = ConsoleData.model_validate_json(get(base + "/console/data").body)
        assert data.graph.workflow == "console-demo"
        assert not data.managed_by_operator
    assert TOKEN not in "".join(output)  # the start-up line names the file, never the token


def test_a_replica_the_hub_lost_makes_its_loop_lost(doc: dict[str, object]) -> None:
    source = FakeSource()
    lost = lost_reason(6.0)  # what RemoteLoops says of a silent replica
    source.value.loops[3] = _replica("workers", 1, state=LoopState.ERROR, reason=lost)
    data = Console(load_workflow(doc)).data(source.status())
    workers = next(f for f in data.loops if f.name == "workers")
    assert (workers.state, workers.reason) == ("lost", lost)
    assert workers.replica_states == ["running", "error"]


def test_an_autoscaled_loop_shows_its_bounds_and_idles_at_zero(doc: dict[str, Any]) -> None:
    workers = doc["spec"]["loops"][2]
    del workers["replicas"]
    workers["autoscale"] = {"minReplicas": 0, "maxReplicas": 4}
    source = FakeSource()
    source.value.loops = [lp for lp in source.value.loops if lp.name != "workers"]
    source.value.autoscale = [
        AutoscaleStatus(loop="workers", desired_replicas=0, current_replicas=0, backlog=0)
    ]
    data = Console(load_workflow(doc)).data(source.status())
    graph = next(g for g in data.graph.loops if g.name == "workers")
    assert (graph.min_replicas, graph.replicas) == (0, 4)
    figures = next(f for f in data.loops if f.name == "workers")
    assert (figures.state, figures.current_replicas, figures.desired_replicas) == ("idle", 0, 0)
    assert figures.replica_states == []
    # A loop that is not autoscaled has no replica counts of its own.
    fixed = next(f for f in data.loops if f.name == "source")
    assert (fixed.state, fixed.current_replicas) == ("running", None)
    source.value.autoscale = [
        AutoscaleStatus(loop="workers", desired_replicas=2, current_replicas=2, backlog=90)
    ]
    source.value.loops.append(_replica("workers", 0, state=LoopState.PENDING))
    data = Console(load_workflow(doc)).data(source.status())
    figures = next(f for f in data.loops if f.name == "workers")
    assert (figures.state, figures.current_replicas, figures.desired_replicas) == (
        "pending",
        2,
        2,
    )


def test_a_hubs_console_follows_its_document_rewritten_in_place(
    doc: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On Kubernetes a change to a loop's nodes rewrites the hub's document (a ConfigMap volume)
    without restarting it: its console shows the new graph, and keeps the last good one when
    the new document does not load."""
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(doc))
    watch = SpecFileWatch(path, every_seconds=0)
    console = Console(load_workflow(path), newer_plan=watch)

    def watcher_nodes() -> list[str]:
        graph = console.data(FakeSource().status()).graph
        return [n.name for n in next(g for g in graph.loops if g.name == "watcher").nodes]

    assert watcher_nodes() == ["log"]
    loops = doc["spec"]["loops"]
    loops[1]["nodes"].append({"name": "audit", "kind": "nonBlocking", "class": "LogSink"})

    def rewrite(text: str, stamp_ns: int) -> None:
        swap = tmp_path / "swap.json"  # the kubelet swaps the file, never edits it
        swap.write_text(text)
        os.utime(swap, ns=(stamp_ns, stamp_ns))
        os.replace(swap, path)

    rewrite(json.dumps(doc), 1_000_000_000)
    assert watcher_nodes() == ["log", "audit"]
    assert watcher_nodes() == ["log", "audit"]  # unchanged since: not read again
    rewrite("{not a workflow", 2_000_000_000)
    with caplog.at_level("WARNING", logger="ostinato.cli"):
        assert watcher_nodes() == ["log", "audit"]
    assert "does not load; the console keeps its graph" in caplog.text
