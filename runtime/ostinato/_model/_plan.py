"""Turns a workflow document into checked execution plans, one per loop, or field-named errors."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from ._classes import NotImported, resolve_class
from ._document import DocumentError, check_bounds, read_document
from ._errors import FieldError, WorkflowError, errors_from_pydantic
from ._nodes import BaseNode, NodeConfig, NodeKind
from ._queue_nodes import QueueConfig, QueueNode
from ._spec import LoopSpec, NodeSpec, QueueMode, QueueSpec, Workflow
from ._status import replica_key

__all__ = [
    "LoopPlan",
    "NodePlan",
    "WorkflowPlan",
    "build_plan",
    "load_document",
    "load_workflow",
    "parse_workflow",
]


@dataclass(frozen=True, slots=True)
class NodePlan:
    """A node ready to instantiate: its class, its kind in this loop, its validated config."""

    name: str
    kind: NodeKind
    cls: type[BaseNode[Any]]
    config: NodeConfig
    spec: NodeSpec
    path: str


@dataclass(frozen=True, slots=True)
class LoopPlan:
    name: str
    spec: LoopSpec
    producer: NodePlan
    chain: tuple[NodePlan, ...]
    reads: frozenset[str]
    writes: frozenset[str]


@dataclass(frozen=True, slots=True)
class WorkflowPlan:
    """Everything the orchestrator needs: the document, one plan per loop, the queue edges."""

    workflow: Workflow
    loops: tuple[LoopPlan, ...]
    queues: Mapping[str, QueueSpec]
    #: (writer loop, queue, reader loop): where queue nodes cut the graph between loops.
    edges: tuple[tuple[str, str, str], ...]

    @property
    def name(self) -> str:
        return self.workflow.metadata.name

    def loop(self, name: str) -> LoopPlan:
        for plan in self.loops:
            if plan.name == name:
                return plan
        raise KeyError(f"workflow {self.name!r} has no loop {name!r}")


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON workflow file into a mapping, within the bounds of _document;
    syntax errors name line and column, duplicate keys both lines."""
    try:
        doc = read_document(path)
    except DocumentError as exc:
        raise WorkflowError([FieldError("", str(exc))], str(path)) from None
    if not isinstance(doc, dict):
        got = "an empty document" if doc is None else f"a {type(doc).__name__}"
        raise WorkflowError(
            [FieldError("", f"the document must be a mapping, got {got}")], str(path)
        )
    return doc


def parse_workflow(doc: Mapping[str, Any], source: str | None = None) -> Workflow:
    """Structural validation of a document (types, ranges, unknown fields)."""
    try:
        check_bounds(doc)  # a mapping from the admission webhook or a caller, not a file
    except DocumentError as exc:
        raise WorkflowError([FieldError("", str(exc))], source) from None
    try:
        return Workflow.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise WorkflowError(errors_from_pydantic(exc, model=Workflow), source) from None


def _plan_node(
    spec: NodeSpec,
    path: str,
    slot: str,
    queues: Mapping[str, QueueSpec],
    errors: list[FieldError],
    imports: bool = True,
) -> NodePlan | None:
    count = len(errors)
    if spec.kind is not None:
        kind = NodeKind(spec.kind)
    elif slot == "producer":
        kind = NodeKind.PRODUCER
    else:
        errors.append(FieldError(f"{path}.kind", "required: blocking or nonBlocking"))
        return None
    slot_ok = True
    if slot == "producer" and kind is not NodeKind.PRODUCER:
        slot_ok = False
        errors.append(
            FieldError(f"{path}.kind", f"the producer slot needs kind producer, not {kind.value}")
        )
    if slot == "chain" and kind is NodeKind.PRODUCER:
        slot_ok = False
        errors.append(
            FieldError(
                f"{path}.kind", "a producer belongs in the loop's 'producer' field, not in nodes"
            )
        )
    if spec.queue is not None:
        ref = spec.queue
        if (ref.read is None) == (ref.write is None):
            errors.append(FieldError(f"{path}.queue", "set exactly one of 'read' and 'write'"))
        for role, name in (("read", ref.read), ("write", ref.write)):
            if name is not None and name not in queues:
                errors.append(
                    FieldError(
                        f"{path}.queue.{role}", f"queue {name!r} is not declared in spec.queues"
                    )
                )
        if ref.read is not None and kind is NodeKind.NON_BLOCKING:
            errors.append(
                FieldError(f"{path}.kind", "a queue reader is a producer or blocking node")
            )
        if ref.write is not None and kind is NodeKind.PRODUCER:
            errors.append(
                FieldError(f"{path}.kind", "a queue writer is a blocking or nonBlocking node")
            )
        if ref.batch is not None and ref.read is None:
            errors.append(FieldError(f"{path}.queue.batch", "only a queue reader takes a batch"))
        if ref.split and ref.write is None:
            errors.append(FieldError(f"{path}.queue.split", "only a queue writer splits a list"))
        if spec.class_ is not None:
            errors.append(FieldError(f"{path}.class", "a queue node takes no class"))
        for key in ("queue", "role", "batch", "split"):
            if key in spec.config:
                errors.append(FieldError(f"{path}.config.{key}", "set by the node's 'queue' field"))
        if len(errors) > count:
            return None
        role, name = ("read", ref.read) if ref.read is not None else ("write", ref.write)
        given = {"queue": name, "role": role, "batch": ref.batch, "split": ref.split}
        try:
            qconfig = QueueConfig.model_validate({**spec.config, **given})
        except pydantic.ValidationError as exc:
            errors.extend(errors_from_pydantic(exc, f"{path}.config", QueueConfig))
            return None
        return NodePlan(spec.name, kind, QueueNode, qconfig, spec, path)
    if spec.class_ is None:
        errors.append(FieldError(f"{path}.class", "required field is missing"))
        return None
    if not imports and ":" in spec.class_:
        # Another loop's class, not imported here; the built-ins are ours and always checked.
        return NodePlan(spec.name, kind, NotImported, NodeConfig.model_construct(), spec, path)
    try:
        cls = resolve_class(spec.class_)
    except ValueError as exc:
        errors.append(FieldError(f"{path}.class", str(exc)))
        return None
    if slot_ok and kind not in cls.kinds:  # a wrong slot is already reported
        supported = ", ".join(sorted(k.value for k in cls.kinds)) or "none"
        errors.append(
            FieldError(
                f"{path}.kind", f"{spec.class_} cannot be a {kind.value} node (it is: {supported})"
            )
        )
    try:
        config = cls.config_class.model_validate(spec.config)
    except pydantic.ValidationError as exc:
        errors.extend(errors_from_pydantic(exc, f"{path}.config", cls.config_class))
        return None
    if len(errors) > count:
        return None
    return NodePlan(spec.name, kind, cls, config, spec, path)


def _autoscale_errors(
    loop: LoopSpec, base: str, queues: Mapping[str, QueueSpec]
) -> list[FieldError]:
    """An autoscaled loop reads a work queue with its producer, and names no fixed replicas."""
    scale = loop.autoscale
    if scale is None:
        return []
    errors = []
    if loop.replicas is not None:
        errors.append(FieldError(f"{base}.replicas", "set either replicas or autoscale, not both"))
    if scale.min_replicas > scale.max_replicas:
        errors.append(
            FieldError(
                f"{base}.autoscale.minReplicas",
                f"must be <= maxReplicas ({scale.max_replicas})",
            )
        )
    queue = queues.get(loop.read_queue) if loop.read_queue is not None else None
    if queue is None or queue.mode is not QueueMode.WORK:
        what = (
            f"its producer reads queue {queue.name!r}, a {queue.mode.value} queue"
            if queue is not None
            else "its producer reads no queue"
        )
        errors.append(
            FieldError(
                f"{base}.autoscale",
                f"only a loop whose producer reads a work queue autoscales; {what}",
            )
        )
    return errors


def _duplicates(names: Iterable[str]) -> list[tuple[int, str]]:
    seen: set[str] = set()
    dups = []
    for i, name in enumerate(names):
        if name in seen:
            dups.append((i, name))
        seen.add(name)
    return dups


def build_plan(
    workflow: Workflow, source: str | None = None, *, import_loops: Collection[str] | None = None
) -> WorkflowPlan:
    """Cross-field checks, class resolution and config validation; all errors at once.

    ``import_loops``: the loops whose users' classes are imported and their configs checked
    (None: every loop). The others' nodes get :class:`NotImported`; everything else is checked.
    """
    errors: list[FieldError] = []
    spec = workflow.spec
    for i, name in _duplicates(q.name for q in spec.queues):
        errors.append(FieldError(f"spec.queues[{i}].name", f"duplicate queue name {name!r}"))
    for i, name in _duplicates(lp.name for lp in spec.loops):
        errors.append(FieldError(f"spec.loops[{i}].name", f"duplicate loop name {name!r}"))
    loop_names = {lp.name for lp in spec.loops}
    for i, lp in enumerate(spec.loops):
        for r in range(1, lp.max_replicas):
            if replica_key(lp.name, r) in loop_names:
                errors.append(
                    FieldError(
                        f"spec.loops[{i}].replicas",
                        f"replica {r} of loop {lp.name!r} is called {replica_key(lp.name, r)}, "
                        "the name of another loop",
                    )
                )
    queues = {q.name: q for q in spec.queues}
    loops: list[LoopPlan] = []
    for li, loop in enumerate(spec.loops):
        base = f"spec.loops[{li}]"
        if loop.event_loop is not None and loop.pool.value != "asyncio":
            errors.append(
                FieldError(
                    f"{base}.eventLoop", "only loops in the asyncio pool share an event loop"
                )
            )
        errors.extend(_autoscale_errors(loop, base, queues))
        names = ([loop.producer.name] if loop.producer else []) + [n.name for n in loop.nodes]
        offset = 1 if loop.producer else 0
        for i, name in _duplicates(names):
            errors.append(
                FieldError(
                    f"{base}.nodes[{i - offset}].name",
                    f"duplicate node name {name!r} in loop {loop.name!r}",
                )
            )
        producer = None
        imports = import_loops is None or loop.name in import_loops
        if loop.producer is None:
            errors.append(FieldError(f"{base}.producer", "every loop needs a producer node"))
        else:
            producer = _plan_node(
                loop.producer, f"{base}.producer", "producer", queues, errors, imports
            )
        chain = [
            _plan_node(node, f"{base}.nodes[{ni}]", "chain", queues, errors, imports)
            for ni, node in enumerate(loop.nodes)
        ]
        nodes = [loop.producer, *loop.nodes] if loop.producer else list(loop.nodes)
        seen_reads: dict[str, str] = {}
        for ni, n in enumerate(loop.nodes):
            if n.queue is not None and n.queue.read is not None:
                first = seen_reads.get(n.queue.read)
                if first is None and loop.producer is not None and loop.producer.queue:
                    first = loop.producer.name if loop.producer.queue.read == n.queue.read else None
                if first is not None:
                    errors.append(
                        FieldError(
                            f"{base}.nodes[{ni}].queue.read",
                            f"loop {loop.name!r} already reads queue {n.queue.read!r} in node "
                            f"{first!r}: one reader per queue per loop",
                        )
                    )
                seen_reads.setdefault(n.queue.read, n.name)
        reads = frozenset(n.queue.read for n in nodes if n.queue and n.queue.read)
        writes = frozenset(n.queue.write for n in nodes if n.queue and n.queue.write)
        if producer is not None and all(c is not None for c in chain):
            loops.append(
                LoopPlan(loop.name, loop, producer, tuple(c for c in chain if c), reads, writes)
            )
    if not errors:
        read = {q for lp in loops for q in lp.reads}
        for qi, queue in enumerate(spec.queues):
            writers = sorted(lp.name for lp in loops if queue.name in lp.writes)
            if writers and queue.name not in read and queue.on_full.value == "block":
                errors.append(
                    FieldError(
                        f"spec.queues[{qi}].name",
                        f"queue {queue.name!r} is written by {', '.join(writers)} but read by no "
                        "loop: with onFull block its writers would wait forever once it is full",
                    )
                )
    if errors:
        raise WorkflowError(errors, source)
    edges = tuple(
        (w.name, q, r.name) for w in loops for q in sorted(w.writes) for r in loops if q in r.reads
    )
    return WorkflowPlan(workflow, tuple(loops), queues, edges)


def load_workflow(
    source: str | Path | Mapping[str, Any], *, import_loops: Collection[str] | None = None
) -> WorkflowPlan:
    """A file path or a mapping -> a checked plan, or :class:`WorkflowError`.

    ``import_loops`` as in :func:`build_plan`: a hub passes none, a loop's process its own.
    """
    if isinstance(source, Mapping):
        doc, label = dict(source), None
    else:
        doc, label = load_document(source), str(source)
    return build_plan(parse_workflow(doc, label), label, import_loops=import_loops)


def dump_document(workflow: Workflow) -> str:
    """The normalized document as JSON (what a process loop or the operator receives)."""
    return json.dumps(workflow.model_dump(mode="json", by_alias=True, exclude_none=True))
