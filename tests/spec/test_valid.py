"""Valid workflow documents: what the plans contain, defaults, aliases, the normalized dump."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import ostinato
from ostinato import NodeKind
from ostinato._model._builtins import CounterConfig, IntervalConfig, LogSinkConfig, SQLiteConfig
from ostinato._model._classes import resolve_class
from ostinato._model._plan import dump_document, parse_workflow
from ostinato._model._spec import (
    ErrorPolicy,
    OnFull,
    Pool,
    QueueMode,
    QueueOnFull,
)

from . import nodes

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo.yaml"


@pytest.fixture
def demo_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    # `ostinato run` puts the file's folder on sys.path; do the same for demo_nodes.
    monkeypatch.syspath_prepend(str(DEMO.parent))
    return DEMO


def minimal(**loop: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "mini"},
        "spec": {
            "loops": [
                {
                    "name": "only",
                    "producer": {"name": "count", "class": "CounterProducer"},
                    "nodes": [{"name": "log", "kind": "blocking", "class": "LogSink"}],
                    **loop,
                }
            ]
        },
    }


#: Everything a document may say, including what the Kubernetes API server adds.
RICH: dict[str, Any] = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {
        "name": "rich",
        "namespace": "prod",
        "labels": {"app.kubernetes.io/name": "rich"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "uid": "6f1c1d6e-8e1a-4d7e-9c77-3f1f0d1e2a3b",
        "resourceVersion": "123456",
        "generation": 3,
        "creationTimestamp": "2024-05-01T12:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        "finalizers": ["ostinato.dev/cleanup"],
    },
    "spec": {
        "loops": [
            {
                "name": "fast",
                "pool": "asyncio",
                "eventLoop": "shared",
                "maxIterations": 100,
                "drainTimeoutSeconds": 2.5,
                "sideEffectWorkers": 8,
                "heartbeatSeconds": 0.5,
                "circuitBreaker": {"consecutiveFailures": 5, "cooldownSeconds": 1.5},
                "restart": {
                    "initialBackoffSeconds": 0.1,
                    "maxBackoffSeconds": 5,
                    "resetAfterSeconds": 30,
                },
                "producer": {
                    "name": "tick",
                    "kind": "producer",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 0.25, "overrun": "catchUp", "count": 10},
                },
                "nodes": [
                    {
                        "name": "scale",
                        "kind": "blocking",
                        "class": "tests.spec.nodes:OnlyBlocking",
                        "config": {"scaleFactor": 3, "labelText": "x3"},
                        "retry": {
                            "maxAttempts": 4,
                            "initialBackoffSeconds": 0.01,
                            "maxBackoffSeconds": 0.5,
                            "multiplier": 3,
                            "jitter": 0,
                        },
                        "onError": "pauseLoop",
                    },
                    {
                        "name": "store",
                        "kind": "nonBlocking",
                        "class": "SQLiteWriter",
                        "config": {
                            "path": "/tmp/x.db",
                            "table": "Fast_Rows",
                            "synchronous": "FULL",
                        },
                        "maxInFlight": 2,
                        "onFull": "drop",
                        "onError": "continue",
                    },
                ],
            },
            {
                "name": "slow",
                "pool": "process",
                "producer": {"name": "count", "class": "CounterProducer", "config": {"step": 5}},
            },
        ],
        "queues": [
            {"name": "events"},
            {
                "name": "jobs",
                "mode": "work",
                "capacity": 10,
                "onFull": "dropOldest",
                "durable": True,
                "maxMessageBytes": 4096,
            },
        ],
    },
    "status": {"phase": "Running", "observedGeneration": 3},
}


# -- the demo ---------------------------------------------------------------------------------


def test_demo_loads(demo_path: Path) -> None:
    plan = ostinato.load_workflow(demo_path)
    assert plan.name == "demo"
    assert [(lp.name, lp.spec.pool) for lp in plan.loops] == [
        ("sensor", Pool.THREAD),
        ("counter", Pool.ASYNCIO),
        ("worker", Pool.PROCESS),
    ]
    assert plan.queues == {}
    assert plan.edges == ()
    assert all(lp.reads == frozenset() and lp.writes == frozenset() for lp in plan.loops)


def test_demo_chains_in_order_with_kinds_and_classes(demo_path: Path) -> None:
    import demo_nodes  # type: ignore[import-not-found]  # on sys.path through the fixture

    plan = ostinato.load_workflow(demo_path)
    sensor = plan.loop("sensor")
    assert (sensor.producer.name, sensor.producer.kind) == ("tick", NodeKind.PRODUCER)
    assert sensor.producer.cls is ostinato.IntervalProducer
    assert sensor.producer.path == "spec.loops[0].producer"
    assert [(n.name, n.kind, n.cls) for n in sensor.chain] == [
        ("read", NodeKind.BLOCKING, demo_nodes.Sensor),
        ("smooth", NodeKind.BLOCKING, demo_nodes.Smooth),
        ("log", NodeKind.BLOCKING, ostinato.LogSink),
        ("store", NodeKind.NON_BLOCKING, ostinato.SQLiteWriter),
    ]
    assert [n.path for n in sensor.chain] == [f"spec.loops[0].nodes[{i}]" for i in range(4)]
    assert sensor.chain[3].spec.max_in_flight == 8
    assert sensor.chain[3].config == SQLiteConfig(path="/tmp/ostinato-demo.db", table="sensor")

    counter = plan.loop("counter")
    assert [(n.name, n.cls) for n in counter.chain] == [
        ("square", demo_nodes.square),
        ("log", ostinato.LogSink),
    ]
    assert counter.chain[1].config == LogSinkConfig(every=100, message="squared: {payload}")
    worker = plan.loop("worker")
    assert [n.kind for n in worker.chain] == [
        NodeKind.BLOCKING,
        NodeKind.BLOCKING,
        NodeKind.NON_BLOCKING,
    ]
    assert worker.chain[0].config == demo_nodes.SensorConfig()


def test_unknown_loop_name_is_a_key_error(demo_path: Path) -> None:
    plan = ostinato.load_workflow(demo_path)
    with pytest.raises(KeyError, match="workflow 'demo' has no loop 'nope'"):
        plan.loop("nope")


def test_load_accepts_str_path_and_json(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(minimal()))
    assert ostinato.load_workflow(str(path)).name == "mini"
    assert ostinato.load_workflow(path).loops[0].chain[0].cls is ostinato.LogSink


# -- class resolution -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("IntervalProducer", ostinato.IntervalProducer),
        ("CounterProducer", ostinato.CounterProducer),
        ("LogSink", ostinato.LogSink),
        ("SQLiteWriter", ostinato.SQLiteWriter),
        ("ostinato:LogSink", ostinato.LogSink),
        ("ostinato._model._builtins:IntervalProducer", ostinato.IntervalProducer),
        ("tests.spec.nodes:Outer.Inner", nodes.Outer.Inner),
        ("tests.spec.nodes:double", nodes.double),
    ],
)
def test_class_names_resolve(name: str, cls: type) -> None:
    assert resolve_class(name) is cls


def test_builtin_names_resolve_in_a_document() -> None:
    doc = minimal()
    doc["spec"]["loops"][0]["producer"]["class"] = "IntervalProducer"
    doc["spec"]["loops"][0]["producer"]["config"] = {"periodSeconds": 1}
    doc["spec"]["loops"][0]["nodes"].append(
        {"name": "db", "kind": "nonBlocking", "class": "SQLiteWriter", "config": {"path": "a"}}
    )
    loop = ostinato.load_workflow(doc).loops[0]
    assert loop.producer.cls is ostinato.IntervalProducer
    assert [n.cls for n in loop.chain] == [ostinato.LogSink, ostinato.SQLiteWriter]


def test_class_with_both_kinds_serves_as_either() -> None:
    doc = minimal()
    doc["spec"]["loops"][0]["nodes"] = [
        {"name": "a", "kind": "blocking", "class": "tests.spec.nodes:Both"},
        {"name": "b", "kind": "nonBlocking", "class": "tests.spec.nodes:Both"},
        {"name": "c", "kind": "nonBlocking", "class": "LogSink"},
    ]
    chain = ostinato.load_workflow(doc).loops[0].chain
    assert [(n.kind, n.cls) for n in chain] == [
        (NodeKind.BLOCKING, nodes.Both),
        (NodeKind.NON_BLOCKING, nodes.Both),
        (NodeKind.NON_BLOCKING, ostinato.LogSink),
    ]


def test_producer_kind_may_be_omitted_or_given() -> None:
    doc = minimal()
    assert ostinato.load_workflow(doc).loops[0].producer.kind is NodeKind.PRODUCER
    doc["spec"]["loops"][0]["producer"]["kind"] = "producer"
    assert ostinato.load_workflow(doc).loops[0].producer.kind is NodeKind.PRODUCER


def test_loop_without_chain_nodes() -> None:
    doc = minimal(nodes=[])
    assert ostinato.load_workflow(doc).loops[0].chain == ()


# -- camelCase documents, snake_case Python ------------------------------------------------------


def test_camel_case_keys_map_to_snake_case_fields() -> None:
    plan = ostinato.load_workflow(copy.deepcopy(RICH))
    fast = plan.loop("fast")
    assert fast.producer.config == IntervalConfig(period_seconds=0.25, overrun="catchUp", count=10)
    assert isinstance(fast.producer.config, IntervalConfig)
    scale, store = fast.chain
    assert scale.config == nodes.MyConfig(scale_factor=3, label_text="x3")
    assert store.config == SQLiteConfig(path="/tmp/x.db", table="Fast_Rows", synchronous="FULL")
    assert plan.loop("slow").producer.config == CounterConfig(step=5)

    spec = fast.spec
    assert spec.pool is Pool.ASYNCIO
    assert spec.event_loop == "shared"
    assert spec.max_iterations == 100
    assert spec.drain_timeout_seconds == 2.5
    assert spec.side_effect_workers == 8
    assert spec.heartbeat_seconds == 0.5
    assert spec.circuit_breaker is not None
    assert spec.circuit_breaker.consecutive_failures == 5
    assert spec.circuit_breaker.cooldown_seconds == 1.5
    assert spec.restart.initial_backoff_seconds == 0.1
    assert spec.restart.max_backoff_seconds == 5
    assert spec.restart.reset_after_seconds == 30
    retry = scale.spec.retry
    assert (retry.max_attempts, retry.initial_backoff_seconds, retry.max_backoff_seconds) == (
        4,
        0.01,
        0.5,
    )
    assert (retry.multiplier, retry.jitter) == (3, 0)
    assert scale.spec.on_error is ErrorPolicy.PAUSE_LOOP
    assert scale.spec.class_ == "tests.spec.nodes:OnlyBlocking"
    assert (store.spec.max_in_flight, store.spec.on_full) == (2, OnFull.DROP)
    assert store.spec.on_error is ErrorPolicy.CONTINUE


def test_defaults_are_applied() -> None:
    plan = ostinato.load_workflow(minimal())
    assert plan.workflow.metadata.labels == {}
    assert plan.workflow.metadata.namespace is None
    assert plan.workflow.status is None
    assert plan.workflow.spec.queues == []
    loop = plan.loops[0]
    spec = loop.spec
    assert spec.pool is Pool.THREAD
    assert spec.max_iterations is None
    assert spec.drain_timeout_seconds == 10.0
    assert spec.side_effect_workers == 4
    assert spec.event_loop is None
    assert spec.circuit_breaker is None
    assert spec.heartbeat_seconds == 1.0
    assert (
        spec.restart.initial_backoff_seconds,
        spec.restart.max_backoff_seconds,
        spec.restart.reset_after_seconds,
    ) == (0.5, 30.0, 60.0)
    log = loop.chain[0]
    assert log.spec.config == {}
    assert log.config == LogSinkConfig()
    assert (log.config.level, log.config.every) == ("INFO", 1)
    assert log.spec.queue is None
    assert log.spec.on_error is ErrorPolicy.SKIP_ITERATION
    assert (log.spec.max_in_flight, log.spec.on_full) == (16, OnFull.BLOCK)
    retry = log.spec.retry
    assert (retry.max_attempts, retry.initial_backoff_seconds, retry.max_backoff_seconds) == (
        1,
        0.1,
        10.0,
    )
    assert (retry.multiplier, retry.jitter) == (2.0, 0.1)
    assert loop.producer.config == CounterConfig(start=0, step=1, count=None)


def test_circuit_breaker_and_queue_defaults() -> None:
    doc = minimal(circuitBreaker={"consecutiveFailures": 2})
    doc["spec"]["queues"] = [{"name": "q"}]
    plan = ostinato.load_workflow(doc)
    breaker = plan.loops[0].spec.circuit_breaker
    assert breaker is not None
    assert breaker.cooldown_seconds == 30.0
    queue = plan.queues["q"]
    assert (queue.mode, queue.capacity, queue.on_full) == (
        QueueMode.BROADCAST,
        1000,
        QueueOnFull.BLOCK,
    )
    assert (queue.durable, queue.max_message_bytes) == (False, 1 << 20)


def test_a_whole_number_written_with_a_point_is_an_integer() -> None:
    """The API server stores `replicas: 2.0` as 2 (kubectl and a raw JSON body alike), so
    `ostinato run` reads it as 2 too; 2.5 stays refused (tests/spec/test_invalid.py)."""
    doc = minimal(replicas=2.0, maxIterations=5.0, sideEffectWorkers=3.0)
    doc["spec"]["queues"] = [{"name": "q", "capacity": 10.0, "maxMessageBytes": 1024.0}]
    plan = ostinato.load_workflow(doc)
    loop = plan.loops[0].spec
    assert (loop.replicas, loop.max_iterations, loop.side_effect_workers) == (2, 5, 3)
    assert all(type(v) is int for v in (loop.replicas, loop.max_iterations))
    queue = plan.queues["q"]
    assert (queue.capacity, queue.max_message_bytes) == (10, 1024)
    assert type(queue.capacity) is int


def test_queues_and_api_server_metadata_parse() -> None:
    plan = ostinato.load_workflow(copy.deepcopy(RICH))
    meta = plan.workflow.metadata
    assert (meta.name, meta.namespace) == ("rich", "prod")
    assert meta.labels == {"app.kubernetes.io/name": "rich"}
    extra = meta.model_extra
    assert extra is not None
    assert extra["uid"] == "6f1c1d6e-8e1a-4d7e-9c77-3f1f0d1e2a3b"
    assert extra["resourceVersion"] == "123456"
    assert extra["generation"] == 3
    assert extra["managedFields"] == [{"manager": "kubectl", "operation": "Update"}]
    assert plan.workflow.status == {"phase": "Running", "observedGeneration": 3}
    assert list(plan.queues) == ["events", "jobs"]
    jobs = plan.queues["jobs"]
    assert (jobs.mode, jobs.capacity, jobs.on_full, jobs.durable, jobs.max_message_bytes) == (
        QueueMode.WORK,
        10,
        QueueOnFull.DROP_OLDEST,
        True,
        4096,
    )
    assert plan.edges == ()


# -- the normalized dump ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["demo", "rich", "minimal"])
def test_dump_document_round_trips(which: str, demo_path: Path) -> None:
    if which == "demo":
        workflow = ostinato.load_workflow(demo_path).workflow
    else:
        workflow = ostinato.load_workflow(
            copy.deepcopy(RICH if which == "rich" else minimal())
        ).workflow
    text = dump_document(workflow)
    doc = json.loads(text)
    again = ostinato.load_workflow(doc).workflow
    assert again == workflow
    assert dump_document(again) == text


def test_dump_uses_document_names_and_omits_unset() -> None:
    doc = json.loads(dump_document(ostinato.load_workflow(minimal()).workflow))
    assert doc["apiVersion"] == "ostinato.dev/v1alpha1"
    assert "status" not in doc
    loop = doc["spec"]["loops"][0]
    assert "maxIterations" not in loop
    assert "eventLoop" not in loop
    assert loop["drainTimeoutSeconds"] == 10.0
    node = loop["nodes"][0]
    assert node["class"] == "LogSink"
    assert "class_" not in node
    assert node["onError"] == "skipIteration"
    assert node["retry"]["maxAttempts"] == 1


def test_dump_keeps_api_server_metadata() -> None:
    doc = json.loads(dump_document(ostinato.load_workflow(copy.deepcopy(RICH)).workflow))
    assert doc["metadata"]["uid"] == RICH["metadata"]["uid"]
    assert doc["metadata"]["resourceVersion"] == "123456"
    assert doc["status"] == RICH["status"]


# -- queue nodes ---------------------------------------------------------------------------


def queue_doc() -> dict[str, Any]:
    doc = copy.deepcopy(RICH)
    loops = doc["spec"]["loops"]
    loops[0]["nodes"].append({"name": "out", "kind": "nonBlocking", "queue": {"write": "events"}})
    loops[1]["producer"] = {"name": "in", "queue": {"read": "events"}}
    loops[1]["nodes"] = [
        {"name": "take", "kind": "blocking", "queue": {"read": "jobs"}},
        {"name": "give", "kind": "blocking", "queue": {"write": "jobs"}},
    ]
    return doc


def test_queue_nodes_parse() -> None:
    workflow = parse_workflow(queue_doc())
    fast, slow = workflow.spec.loops
    assert fast.nodes[2].queue is not None
    assert (fast.nodes[2].queue.read, fast.nodes[2].queue.write) == (None, "events")
    assert slow.producer is not None
    assert slow.producer.queue is not None
    assert slow.producer.queue.read == "events"


def test_queue_nodes_plan_into_queue_node_and_edges() -> None:
    plan = ostinato.load_workflow(queue_doc())
    fast, slow = plan.loops
    writer = fast.chain[2]
    assert writer.cls.__name__ == "QueueNode"
    assert (writer.config.queue, writer.config.role) == ("events", "write")  # type: ignore[attr-defined]
    assert slow.producer.config.role == "read"  # type: ignore[attr-defined]
    assert (fast.writes, slow.reads, slow.writes) == (
        frozenset({"events"}),
        frozenset({"events", "jobs"}),
        frozenset({"jobs"}),
    )
    assert set(plan.edges) == {
        (fast.name, "events", slow.name),
        (slow.name, "jobs", slow.name),
    }
