"""Invalid workflow documents: each is rejected with an error that names the offending field."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ostinato
from ostinato._model._plan import load_document

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]

#: A valid document every case starts from: two loops (thread and asyncio), a declared queue,
#: built-in nodes and nodes from tests/spec/nodes.py.
BASE: Doc = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "wf"},
    "spec": {
        "loops": [
            {
                "name": "first",
                "producer": {
                    "name": "tick",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 1},
                },
                "nodes": [
                    {"name": "log", "kind": "blocking", "class": "LogSink"},
                    {
                        "name": "side",
                        "kind": "nonBlocking",
                        "class": "tests.spec.nodes:OnlyNonBlocking",
                    },
                ],
            },
            {
                "name": "second",
                "pool": "asyncio",
                "producer": {"name": "count", "class": "CounterProducer"},
                "nodes": [
                    {
                        "name": "work",
                        "kind": "blocking",
                        "class": "tests.spec.nodes:OnlyBlocking",
                        "config": {"scaleFactor": 2},
                    }
                ],
            },
        ],
        "queues": [{"name": "events"}],
    },
}


def _keys(dotted: str) -> list[str | int]:
    return [int(k) if k.isdigit() else k for k in dotted.split(".")]


def _parent(doc: Doc, dotted: str) -> tuple[Any, str | int]:
    *head, last = _keys(dotted)
    node: Any = doc
    for key in head:
        node = node[key]
    return node, last


def put(dotted: str, value: Any) -> Mutation:
    """Set (or add) the value at a dotted path such as ``spec.loops.0.name``."""

    def mutate(doc: Doc) -> None:
        parent, last = _parent(doc, dotted)
        parent[last] = copy.deepcopy(value)

    return mutate


def drop(dotted: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        parent, last = _parent(doc, dotted)
        del parent[last]

    return mutate


def append(dotted: str, item: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        parent, last = _parent(doc, dotted)
        parent[last].append(copy.deepcopy(item))

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: Doc) -> None:
        for m in mutations:
            m(doc)

    return mutate


def derive(mutation: Mutation) -> Doc:
    doc = copy.deepcopy(BASE)
    mutation(doc)
    return doc


L0 = "spec.loops[0]"
N0 = f"{L0}.nodes[0]"
P0 = f"{L0}.producer"
READER = {"name": "inbox", "kind": "blocking", "queue": {"read": "events"}}
WRITER = {"name": "outbox", "kind": "nonBlocking", "queue": {"write": "events"}}


def case(case_id: str, mutation: Mutation, path: str, fragment: str) -> Any:
    return pytest.param(mutation, path, fragment, id=case_id)


CASES = [
    # -- the document's head --------------------------------------------------------------
    case("api-version-wrong", put("apiVersion", "ostinato.dev/v1"), "apiVersion",
         "'ostinato.dev/v1' is not one of 'ostinato.dev/v1alpha1'"),
    case("api-version-missing", drop("apiVersion"), "apiVersion", "required field is missing"),
    case("kind-wrong", put("kind", "Workflows"), "kind", "'Workflows' is not one of 'Workflow'"),
    case("metadata-not-a-mapping", put("metadata", "wf"), "metadata", "valid dictionary"),
    case("metadata-name-missing", drop("metadata.name"), "metadata.name",
         "required field is missing"),
    case("metadata-name-upper-case", put("metadata.name", "MyFlow"), "metadata.name",
         "'MyFlow' is not a valid name (lower-case letters, digits, '-')"),
    case("metadata-name-underscore", put("metadata.name", "my_flow"), "metadata.name",
         "'my_flow' is not a valid name"),
    case("metadata-name-too-long", put("metadata.name", "a" * 64), "metadata.name",
         "at most 63 characters"),
    # the hub's Service is "<name>-hub", a DNS-1035 label: the operator's admission refused
    # these while `ostinato validate` accepted them
    case("metadata-name-starts-with-a-digit", put("metadata.name", "9lives"), "metadata.name",
         "'9lives': a Workflow's name must start with a letter and have at most 59 characters "
         "(its hub's Service is called <name>-hub)"),
    case("metadata-name-too-long-for-its-hub", put("metadata.name", "a" * 60), "metadata.name",
         "must start with a letter and have at most 59 characters"),
    case("metadata-label-not-a-string", put("metadata.labels", {"team": 7}),
         "metadata.labels.team", "valid string"),
    case("top-level-typo", put("stauts", {}), "stauts", "unknown field"),
    case("spec-typo", put("spec.queue", []), "spec.queue",
         "unknown field; did you mean queues?"),
    # -- loops ----------------------------------------------------------------------------
    case("no-loops", put("spec.loops", []), "spec.loops", "must have at least 1 item(s), got 0"),
    case("loops-missing", drop("spec.loops"), "spec.loops", "required field is missing"),
    case("loops-not-a-list", put("spec.loops", {"first": {}}), "spec.loops", "valid list"),
    case("loop-name-upper-case", put("spec.loops.1.name", "Second"), "spec.loops[1].name",
         "'Second' is not a valid name"),
    case("duplicate-loop-names", put("spec.loops.1.name", "first"), "spec.loops[1].name",
         "duplicate loop name 'first'"),
    case("unknown-pool", put("spec.loops.1.pool", "gpu"), "spec.loops[1].pool",
         "'gpu' is not one of 'thread', 'asyncio' or 'process'"),
    case("loop-typo", put("spec.loops.0.maxIteration", 3), f"{L0}.maxIteration",
         "unknown field; did you mean maxIterations?"),
    case("max-iterations-zero", put("spec.loops.0.maxIterations", 0), f"{L0}.maxIterations",
         "must be >= 1"),
    case("max-iterations-negative", put("spec.loops.0.maxIterations", -5),
         f"{L0}.maxIterations", "must be >= 1"),
    case("max-iterations-fraction", put("spec.loops.0.maxIterations", 2.5),
         f"{L0}.maxIterations", "valid integer"),
    case("drain-timeout-negative", put("spec.loops.0.drainTimeoutSeconds", -1),
         f"{L0}.drainTimeoutSeconds", "must be >= 0"),
    # inf and nan validate as floats but JSON (a process loop, the API server) cannot carry them
    # typed as the CRD declares them: what the API server refuses, ostinato run refuses too
    case("replicas-a-boolean", put("spec.loops.0.replicas", True),
         f"{L0}.replicas", "valid integer"),
    case("replicas-a-string", put("spec.loops.0.replicas", "2"),
         f"{L0}.replicas", "valid integer"),
    case("drain-timeout-a-string", put("spec.loops.0.drainTimeoutSeconds", "0.1"),
         f"{L0}.drainTimeoutSeconds", "valid number"),
    case("durable-a-string", put("spec.queues", [{"name": "events", "durable": "yes"}]),
         "spec.queues[0].durable", "valid boolean"),
    case("capacity-beyond-int64", put("spec.queues", [{"name": "events", "capacity": 2**64}]),
         "spec.queues[0].capacity", "must be <= 9223372036854775807"),
    # a whole number with a point is an integer (the API server's reading), but not past int64
    case("capacity-a-float-beyond-int64",
         put("spec.queues", [{"name": "events", "capacity": 1e30}]),
         "spec.queues[0].capacity", "must be <= 9223372036854775807"),
    case("replicas-a-fraction", put("spec.loops.0.replicas", 1.5),
         f"{L0}.replicas", "valid integer"),
    case("replicas-infinite", put("spec.loops.0.replicas", float("inf")),
         f"{L0}.replicas", "valid integer"),
    case("drain-timeout-nan", put("spec.loops.0.drainTimeoutSeconds", float("nan")),
         f"{L0}.drainTimeoutSeconds", "finite number"),
    case("interval-period-inf",
         put("spec.loops.0.producer.config.periodSeconds", float("inf")),
         f"{P0}.config.periodSeconds", "finite number"),
    case("side-effect-workers-zero", put("spec.loops.0.sideEffectWorkers", 0),
         f"{L0}.sideEffectWorkers", "must be >= 1"),
    case("side-effect-workers-too-many", put("spec.loops.0.sideEffectWorkers", 5000),
         f"{L0}.sideEffectWorkers", "must be <= 1024"),
    case("heartbeat-zero", put("spec.loops.0.heartbeatSeconds", 0), f"{L0}.heartbeatSeconds",
         "must be > 0"),
    case("heartbeat-too-long", put("spec.loops.0.heartbeatSeconds", 61),
         f"{L0}.heartbeatSeconds", "must be <= 60"),
    case("circuit-breaker-zero-failures",
         put("spec.loops.0.circuitBreaker", {"consecutiveFailures": 0}),
         f"{L0}.circuitBreaker.consecutiveFailures", "must be >= 1"),
    case("circuit-breaker-failures-missing", put("spec.loops.0.circuitBreaker", {}),
         f"{L0}.circuitBreaker.consecutiveFailures", "required field is missing"),
    case("circuit-breaker-zero-cooldown",
         put("spec.loops.0.circuitBreaker", {"consecutiveFailures": 3, "cooldownSeconds": 0}),
         f"{L0}.circuitBreaker.cooldownSeconds", "must be > 0"),
    case("restart-reset-after-zero", put("spec.loops.0.restart", {"resetAfterSeconds": 0}),
         f"{L0}.restart.resetAfterSeconds", "must be > 0"),
    case("event-loop-on-thread-loop", put("spec.loops.0.eventLoop", "shared"),
         f"{L0}.eventLoop", "only loops in the asyncio pool share an event loop"),
    case("event-loop-on-process-loop",
         both(put("spec.loops.0.pool", "process"), put("spec.loops.0.eventLoop", "shared")),
         f"{L0}.eventLoop", "only loops in the asyncio pool share an event loop"),
    case("event-loop-bad-name", put("spec.loops.1.eventLoop", "Main"),
         "spec.loops[1].eventLoop", "'Main' is not a valid name"),
    # -- producers and node kinds ---------------------------------------------------------
    case("producer-missing", drop("spec.loops.1.producer"), "spec.loops[1].producer",
         "every loop needs a producer node"),
    case("producer-kind-blocking", put("spec.loops.0.producer.kind", "blocking"), f"{P0}.kind",
         "the producer slot needs kind producer, not blocking"),
    case("producer-class-not-a-producer", put("spec.loops.0.producer.class", "LogSink"),
         f"{P0}.kind", "LogSink cannot be a producer node (it is: blocking, nonBlocking)"),
    case("producer-kind-in-nodes",
         put("spec.loops.0.nodes.0", {"name": "log", "kind": "producer",
                                      "class": "CounterProducer"}),
         f"{N0}.kind", "a producer belongs in the loop's 'producer' field, not in nodes"),
    case("producer-class-as-blocking", put("spec.loops.0.nodes.0.class", "CounterProducer"),
         f"{N0}.kind", "CounterProducer cannot be a blocking node (it is: producer)"),
    case("chain-node-without-kind", drop("spec.loops.0.nodes.0.kind"), f"{N0}.kind",
         "required: blocking or nonBlocking"),
    case("unknown-kind-value", put("spec.loops.0.nodes.0.kind", "async"), f"{N0}.kind",
         "'async' is not one of 'producer', 'blocking' or 'nonBlocking'"),
    case("blocking-class-as-non-blocking",
         put("spec.loops.1.nodes.0.kind", "nonBlocking"), "spec.loops[1].nodes[0].kind",
         "tests.spec.nodes:OnlyBlocking cannot be a nonBlocking node (it is: blocking)"),
    case("non-blocking-class-as-blocking", put("spec.loops.0.nodes.1.kind", "blocking"),
         f"{L0}.nodes[1].kind",
         "tests.spec.nodes:OnlyNonBlocking cannot be a blocking node (it is: nonBlocking)"),
    case("decorated-blocking-as-non-blocking",
         both(put("spec.loops.0.nodes.1.class", "tests.spec.nodes:double")),
         f"{L0}.nodes[1].kind", "tests.spec.nodes:double cannot be a nonBlocking node"),
    # -- node names -----------------------------------------------------------------------
    case("node-name-trailing-dash", put("spec.loops.0.nodes.0.name", "log-"), f"{N0}.name",
         "'log-' is not a valid name"),
    case("node-name-missing", drop("spec.loops.0.nodes.0.name"), f"{N0}.name",
         "required field is missing"),
    case("duplicate-node-names", put("spec.loops.0.nodes.1.name", "log"), f"{L0}.nodes[1].name",
         "duplicate node name 'log' in loop 'first'"),
    case("chain-node-named-like-producer", put("spec.loops.0.nodes.0.name", "tick"),
         f"{N0}.name", "duplicate node name 'tick' in loop 'first'"),
    case("node-typo", put("spec.loops.0.nodes.1.maxInflight", 3), f"{L0}.nodes[1].maxInflight",
         "unknown field"),
    # -- node classes ---------------------------------------------------------------------
    case("class-missing", drop("spec.loops.0.nodes.0.class"), f"{N0}.class",
         "required field is missing"),
    case("producer-class-missing", drop("spec.loops.0.producer.class"), f"{P0}.class",
         "required field is missing"),
    case("module-unimportable", put("spec.loops.0.nodes.0.class", "tests.spec.no_such:Node"),
         f"{N0}.class", "cannot import module 'tests.spec.no_such'"),
    case("attribute-missing", put("spec.loops.0.nodes.0.class", "tests.spec.nodes:Nope"),
         f"{N0}.class", "module 'tests.spec.nodes' has no attribute 'Nope'"),
    case("class-not-a-node", put("spec.loops.0.nodes.0.class", "tests.spec.nodes:NotANode"),
         f"{N0}.class", "'tests.spec.nodes:NotANode' is not a node class"),
    case("config-class-not-a-node",
         put("spec.loops.0.nodes.0.class", "tests.spec.nodes:MyConfig"), f"{N0}.class",
         "is not a node class (a subclass of ostinato.BaseNode)"),
    case("undecorated-function-not-a-node",
         put("spec.loops.0.nodes.0.class", "tests.spec.nodes:plain_function"), f"{N0}.class",
         "'tests.spec.nodes:plain_function' is not a node class"),
    case("unknown-builtin", put("spec.loops.0.nodes.0.class", "LogSinc"), f"{N0}.class",
         "'LogSinc' is neither 'package.module:Class' nor a built-in node (built-ins: "
         "CounterProducer, IntervalProducer, LogSink, SQLiteWriter)"),
    case("builtin-config-is-not-a-builtin", put("spec.loops.0.nodes.0.class", "LogSinkConfig"),
         f"{N0}.class", "'LogSinkConfig' is neither"),
    # -- node configs ---------------------------------------------------------------------
    case("interval-period-zero", put("spec.loops.0.producer.config.periodSeconds", 0),
         f"{P0}.config.periodSeconds", "must be > 0"),
    case("interval-period-missing", put("spec.loops.0.producer.config", {}),
         f"{P0}.config.periodSeconds", "required field is missing"),
    case("interval-period-wrong-type", put("spec.loops.0.producer.config.periodSeconds", "fast"),
         f"{P0}.config.periodSeconds", "valid number"),
    case("interval-config-unknown-key", put("spec.loops.0.producer.config.periodSecond", 1),
         f"{P0}.config.periodSecond", "unknown field; did you mean periodSeconds?"),
    case("interval-overrun-bad", put("spec.loops.0.producer.config.overrun", "later"),
         f"{P0}.config.overrun", "'later' is not one of 'skip' or 'catchUp'"),
    case("counter-count-negative", put("spec.loops.1.producer.config", {"count": -1}),
         "spec.loops[1].producer.config.count", "must be >= 0"),
    case("log-sink-level-bad", put("spec.loops.0.nodes.0.config", {"level": "TRACE"}),
         f"{N0}.config.level", "'TRACE' is not one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    case("log-sink-every-zero", put("spec.loops.0.nodes.0.config", {"every": 0}),
         f"{N0}.config.every", "must be >= 1"),
    case("sqlite-path-missing", put("spec.loops.0.nodes.0.class", "SQLiteWriter"),
         f"{N0}.config.path", "required field is missing"),
    case("sqlite-table-bad",
         both(put("spec.loops.0.nodes.0.class", "SQLiteWriter"),
              put("spec.loops.0.nodes.0.config", {"path": "x.db", "table": "a b"})),
         f"{N0}.config.table", "'a b'"),
    case("user-config-pattern", put("spec.loops.1.nodes.0.config.code", "ab"),
         "spec.loops[1].nodes[0].config.code", "'ab' does not match the pattern ^[A-Z]+$"),
    case("user-config-wrong-type", put("spec.loops.1.nodes.0.config.scaleFactor", "big"),
         "spec.loops[1].nodes[0].config.scaleFactor", "valid number"),
    case("user-config-out-of-range", put("spec.loops.1.nodes.0.config.scaleFactor", -1),
         "spec.loops[1].nodes[0].config.scaleFactor", "must be > 0"),
    case("config-not-a-mapping", put("spec.loops.0.nodes.0.config", [1, 2]), f"{N0}.config",
         "valid dictionary"),
    # -- retry and error policies ---------------------------------------------------------
    case("retry-max-attempts-zero", put("spec.loops.0.nodes.0.retry", {"maxAttempts": 0}),
         f"{N0}.retry.maxAttempts", "must be >= 1"),
    case("retry-negative-backoff",
         put("spec.loops.0.nodes.0.retry", {"initialBackoffSeconds": -0.5}),
         f"{N0}.retry.initialBackoffSeconds", "must be >= 0"),
    case("retry-multiplier-below-one", put("spec.loops.0.nodes.0.retry", {"multiplier": 0.5}),
         f"{N0}.retry.multiplier", "must be >= 1"),
    case("retry-jitter-above-one", put("spec.loops.0.nodes.0.retry", {"jitter": 1.5}),
         f"{N0}.retry.jitter", "must be <= 1"),
    case("retry-typo", put("spec.loops.0.nodes.0.retry", {"maxAttempt": 3}),
         f"{N0}.retry.maxAttempt", "unknown field"),
    case("retry-not-a-mapping", put("spec.loops.0.nodes.0.retry", 3), f"{N0}.retry",
         "valid dictionary"),
    case("on-error-bad", put("spec.loops.0.nodes.0.onError", "explode"), f"{N0}.onError",
         "'explode' is not one of 'skipIteration', 'continue', 'pauseLoop' or 'stopLoop'"),
    case("on-full-bad", put("spec.loops.0.nodes.1.onFull", "wait"), f"{L0}.nodes[1].onFull",
         "'wait' is not one of 'block' or 'drop'"),
    case("max-in-flight-zero", put("spec.loops.0.nodes.1.maxInFlight", 0),
         f"{L0}.nodes[1].maxInFlight", "must be >= 1"),
    # -- queues and queue nodes -----------------------------------------------------------
    case("duplicate-queue-names", append("spec.queues", {"name": "events"}), "spec.queues[1].name",
         "duplicate queue name 'events'"),
    case("queue-name-bad", put("spec.queues.0.name", "Events"), "spec.queues[0].name",
         "'Events' is not a valid name"),
    case("queue-mode-bad", put("spec.queues.0.mode", "fanout"), "spec.queues[0].mode",
         "'fanout' is not one of 'broadcast' or 'work'"),
    case("queue-capacity-zero", put("spec.queues.0.capacity", 0), "spec.queues[0].capacity",
         "must be >= 1"),
    case("queue-on-full-bad", put("spec.queues.0.onFull", "drop"), "spec.queues[0].onFull",
         "'drop' is not one of 'block', 'dropOldest' or 'dropNewest'"),
    case("queue-max-message-bytes-zero", put("spec.queues.0.maxMessageBytes", 0),
         "spec.queues[0].maxMessageBytes", "must be >= 1"),
    case("queue-spec-typo", put("spec.queues.0.capacty", 10), "spec.queues[0].capacty",
         "unknown field"),
    case("queue-reader-undeclared",
         append("spec.loops.0.nodes", {**READER, "queue": {"read": "missing"}}),
         f"{L0}.nodes[2].queue.read", "queue 'missing' is not declared in spec.queues"),
    case("queue-writer-undeclared",
         append("spec.loops.0.nodes", {**WRITER, "queue": {"write": "missing"}}),
         f"{L0}.nodes[2].queue.write", "queue 'missing' is not declared in spec.queues"),
    case("producer-queue-reader-undeclared",
         put("spec.loops.1.producer", {"name": "inbox", "queue": {"read": "missing"}}),
         "spec.loops[1].producer.queue.read", "queue 'missing' is not declared"),
    case("queue-ref-read-and-write",
         append("spec.loops.0.nodes", {**READER, "queue": {"read": "events", "write": "events"}}),
         f"{L0}.nodes[2].queue", "set exactly one of 'read' and 'write'"),
    case("queue-ref-empty", append("spec.loops.0.nodes", {**READER, "queue": {}}),
         f"{L0}.nodes[2].queue", "set exactly one of 'read' and 'write'"),
    case("queue-ref-typo", append("spec.loops.0.nodes", {**READER, "queue": {"reads": "events"}}),
         f"{L0}.nodes[2].queue.reads", "unknown field"),
    case("queue-reader-non-blocking",
         append("spec.loops.0.nodes", {**READER, "kind": "nonBlocking"}),
         f"{L0}.nodes[2].kind", "a queue reader is a producer or blocking node"),
    case("queue-writer-as-producer",
         put("spec.loops.1.producer", {"name": "outbox", "queue": {"write": "events"}}),
         "spec.loops[1].producer.kind", "a queue writer is a blocking or nonBlocking node"),
    case("queue-node-with-class", append("spec.loops.0.nodes", {**WRITER, "class": "LogSink"}),
         f"{L0}.nodes[2].class", "a queue node takes no class"),
    case("queue-batch-on-writer",
         append("spec.loops.0.nodes",
                {**WRITER, "queue": {"write": "events", "batch": {"maxMessages": 8}}}),
         f"{L0}.nodes[2].queue.batch", "only a queue reader takes a batch"),
    case("queue-split-on-reader",
         append("spec.loops.0.nodes", {**READER, "queue": {"read": "events", "split": True}}),
         f"{L0}.nodes[2].queue.split", "only a queue writer splits a list"),
    case("queue-batch-max-messages-zero",
         append("spec.loops.0.nodes",
                {**READER, "queue": {"read": "events", "batch": {"maxMessages": 0}}}),
         f"{L0}.nodes[2].queue.batch.maxMessages", "must be >= 1"),
    case("queue-batch-wait-negative",
         append("spec.loops.0.nodes",
                {**READER, "queue": {"read": "events",
                                     "batch": {"maxMessages": 8, "maxWaitSeconds": -1}}}),
         f"{L0}.nodes[2].queue.batch.maxWaitSeconds", "must be >= 0"),
    case("queue-batch-in-config",
         append("spec.loops.0.nodes", {**READER, "config": {"batch": {"maxMessages": 8}}}),
         f"{L0}.nodes[2].config.batch", "set by the node's 'queue' field"),
    case("queue-written-never-read",
         both(put("spec.queues", [{"name": "events"}, {"name": "jobs"}]),
              append("spec.loops.0.nodes", {**WRITER, "name": "w2", "queue": {"write": "jobs"}})),
         "spec.queues[1].name", "read by no loop"),
    # snake_case spellings: the API server would drop them silently, so they are refused here
    case("loop-setting-snake-case", put("spec.loops.0.max_iterations", 3),
         f"{L0}.max_iterations", "unknown field; did you mean maxIterations?"),
    case("node-setting-snake-case", put("spec.loops.0.nodes.0.on_error", "continue"),
         f"{L0}.nodes[0].on_error", "unknown field; did you mean onError?"),
    # replica 1 of "first" is "first-1" in tables and logs: no other loop may be called so
    case("replica-named-like-a-loop",
         both(put("spec.loops.0.replicas", 2), put("spec.loops.1.name", "first-1")),
         f"{L0}.replicas", "replica 1 of loop 'first' is called first-1, the name of another"),
]  # fmt: skip


def test_base_document_is_valid() -> None:
    plan = ostinato.load_workflow(BASE)
    assert [lp.name for lp in plan.loops] == ["first", "second"]


def test_there_are_enough_distinct_cases() -> None:
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 35


@pytest.mark.parametrize(("mutation", "path", "fragment"), CASES)
def test_invalid_document(mutation: Mutation, path: str, fragment: str) -> None:
    doc = derive(mutation)
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(doc)
    errors = info.value.errors
    assert all(isinstance(e, ostinato.FieldError) for e in errors)
    at_path = [e.message for e in errors if e.path == path]
    assert at_path, f"no error at {path!r}; got {[str(e) for e in errors]}"
    assert any(fragment in m for m in at_path), f"{fragment!r} not in {at_path}"
    # the rendered exception names the field too, as the CLI prints it
    assert f"  {path}: " in str(info.value)


def test_error_of_a_mapping_has_no_source() -> None:
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(derive(put("kind", "Job")))
    assert info.value.source is None
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("invalid workflow (1 error(s)):")


def test_wrong_producer_slot_is_reported_once() -> None:
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(derive(put("spec.loops.0.producer.kind", "blocking")))
    assert [e.path for e in info.value.errors] == [f"{P0}.kind"]


def test_structural_problems_are_reported_all_at_once() -> None:
    doc = derive(
        both(
            put("metadata.name", "Bad_Name"),
            put("spec.loops.0.maxIterations", 0),
            put("spec.loops.1.pool", "gpu"),
            put("spec.loops.0.nodes.0.onError", "explode"),
            put("spec.queues.0.capacity", 0),
            put("spec.extra", True),
        )
    )
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(doc)
    assert {e.path for e in info.value.errors} == {
        "metadata.name",
        f"{L0}.maxIterations",
        "spec.loops[1].pool",
        f"{N0}.onError",
        "spec.queues[0].capacity",
        "spec.extra",
    }
    assert "invalid workflow (6 error(s))" in str(info.value)


def test_plan_problems_are_reported_all_at_once() -> None:
    doc = derive(
        both(
            put("spec.loops.1.name", "first"),  # duplicate loop
            put("spec.loops.0.eventLoop", "shared"),  # not asyncio
            put("spec.loops.0.producer.config.periodSeconds", 0),  # config
            put("spec.loops.0.nodes.0.class", "Nope"),  # unknown built-in
            put("spec.loops.0.nodes.1.name", "tick"),  # like the producer
            drop("spec.loops.1.producer"),  # missing producer
            put("spec.loops.1.nodes.0.kind", "nonBlocking"),  # kind the class lacks
            append("spec.queues", {"name": "events"}),  # duplicate queue
        )
    )
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(doc)
    assert sorted(e.path for e in info.value.errors) == sorted(
        [
            "spec.loops[1].name",
            f"{L0}.eventLoop",
            f"{P0}.config.periodSeconds",
            f"{N0}.class",
            f"{L0}.nodes[1].name",
            "spec.loops[1].producer",
            "spec.loops[1].nodes[0].kind",
            "spec.queues[1].name",
        ]
    )


def test_three_loops_with_one_name_report_each_repeat() -> None:
    loop = BASE["spec"]["loops"][1]
    doc = derive(put("spec.loops", [loop, loop, loop]))
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(doc)
    assert [str(e) for e in info.value.errors] == [
        "spec.loops[1].name: duplicate loop name 'second'",
        "spec.loops[2].name: duplicate loop name 'second'",
    ]


def test_module_that_fails_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "ostinato_spec_broken_module"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(derive(put("spec.loops.0.nodes.0.class", f"{name}:Node")))
    assert [str(e) for e in info.value.errors] == [
        f"{N0}.class: cannot import module '{name}': RuntimeError: boom at import"
    ]


# -- files that are not workflow documents at all ------------------------------------------

FILES = [
    pytest.param(b"- a\n- b\n", "the document must be a mapping, got a list", id="list"),
    pytest.param(b"just text\n", "the document must be a mapping, got a str", id="scalar"),
    pytest.param(b"", "the document must be a mapping, got an empty document", id="empty"),
    pytest.param(
        b"apiVersion: ostinato.dev/v1alpha1\nkind: [Workflow\n",
        "line 3, column 1: not valid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 2, column 7)",
        id="unclosed-flow-sequence",
    ),
    pytest.param(
        b"kind: Workflow\nmetadata: {name: wf}\n  spec: {}\n",
        "line 3, column 3: not valid YAML: expected <block end>, but found "
        "'<block mapping start>' (while parsing a block mapping at line 1, column 1)",
        id="bad-indentation",
    ),
    pytest.param(
        b"kind: Workflow\nspec: a\n  loops: []\n",
        "line 3, column 8: not valid YAML: mapping values are not allowed here",
        id="mapping-in-a-scalar",
    ),
    pytest.param(
        b"kind: Workflow\n\tspec: {}\n",
        "line 2, column 1: not valid YAML: found character '\\t' that cannot start any token",
        id="tab-indentation",
    ),
    pytest.param(
        b"kind: Workflow\n---\nkind: Workflow\n",
        "line 2, column 1: not valid YAML: but found another document",
        id="two-documents",
    ),
    pytest.param(b"\xff\xfe\x00kind", "not UTF-8 text", id="not-utf8"),
]


@pytest.mark.parametrize(("content", "message"), FILES)
def test_file_that_is_not_a_document(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "workflow.yaml"
    path.write_bytes(content)
    for load in (load_document, ostinato.load_workflow):
        with pytest.raises(ostinato.WorkflowError) as info:
            load(path)
        [error] = info.value.errors
        assert error.path == ""
        assert message in error.message
        assert info.value.source == str(path)
        assert str(info.value).startswith(f"{path}: invalid workflow (1 error(s)):")
        assert "\n" not in error.message  # one line, no YAML source excerpt


def test_invalid_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: ostinato.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\n"
        "spec:\n  loops:\n    - name: a\n      producer:\n        name: tick\n"
        "        class: IntervalProducer\n        config: {periodSeconds: 0}\n"
    )
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(path)
    assert info.value.source == str(path)
    assert str(info.value) == (
        f"{path}: invalid workflow (1 error(s)):\n"
        "  spec.loops[0].producer.config.periodSeconds: must be > 0"
    )
