"""Turns a workflow document into checked execution plans, one per loop, or field-named errors."""

from __future__ import annotations

import difflib
import functools
import importlib
import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic.alias_generators import to_camel

from . import _builtins
from ._document import DocumentError, check_bounds, read_document
from ._nodes import BaseNode, NodeConfig, NodeKind
from ._queue_nodes import QueueConfig, QueueNode
from ._spec import NAME_PATTERN, LoopSpec, NodeSpec, QueueSpec, Workflow
from ._status import replica_key

__all__ = [
    "FieldError",
    "LoopPlan",
    "NodePlan",
    "WorkflowError",
    "WorkflowPlan",
    "build_plan",
    "importable_folder",
    "load_document",
    "load_workflow",
    "parse_workflow",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a document: where (``spec.loops[1].nodes[0].name``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class WorkflowError(ValueError):
    """A workflow document that cannot run; ``errors`` lists every problem found."""

    def __init__(self, errors: Iterable[FieldError], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"{head}invalid workflow ({len(self.errors)} error(s)):\n{lines}")


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


def format_loc(loc: Iterable[int | str], prefix: str = "") -> str:
    """('spec', 'loops', 1, 'name') -> 'spec.loops[1].name'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
}


def _number(value: Any) -> str:
    # pydantic reports the bound of a float field as 0.0; documents say 0.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx and kind.endswith(("than", "than_equal")):
            return f"must be {op} {_number(ctx[key])}"
    if kind == "string_pattern_mismatch":
        # Only the DNS-1123 names of the document get the friendly text; a node config's own
        # pattern (a table name, say) is named as it is.
        if ctx.get("pattern") == NAME_PATTERN:
            return f"{err.get('input')!r} is not a valid name (lower-case letters, digits, '-')"
        return f"{err.get('input')!r} does not match the pattern {ctx.get('pattern')}"
    if kind == "too_short" and "min_length" in ctx:
        return f"must have at least {ctx['min_length']} item(s), got {ctx.get('actual_length')}"
    if kind == "literal_error" or kind == "enum":
        return f"{err.get('input')!r} is not one of {ctx.get('expected', '')}"
    if kind == "value_error":  # our own validators' words, without pydantic's prefix
        return str(err["msg"]).removeprefix("Value error, ")
    return str(err["msg"])


@functools.cache
def _schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, mode="validation")


def _fields_at(model: type[pydantic.BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names (as documents spell them) of the object at ``loc`` inside ``model``."""
    root = _schema(model)
    defs = root.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while True:
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[-1]]
            elif "anyOf" in node:
                shaped = [v for v in node["anyOf"] if v.get("type") != "null"]
                if len(shaped) != 1:
                    return {}
                node = shaped[0]
            else:
                return node

    node = resolve(root)
    for part in loc:
        if isinstance(part, int):
            node = resolve(node.get("items") or {})
        elif part in node.get("properties", {}):
            node = resolve(node["properties"][part])
        elif isinstance(node.get("additionalProperties"), dict):
            node = resolve(node["additionalProperties"])
        else:
            return []
    return list(node.get("properties", {}))


def suggest_field(name: str, known: Sequence[str]) -> str | None:
    """The known field ``name`` was probably meant as: its camelCase spelling, another case, or
    the closest spelling (``max_iterations`` -> ``maxIterations``, ``replica`` -> ``replicas``)."""
    for candidate in (to_camel(name), name.lower()):
        if candidate in known and candidate != name:
            return candidate
    folded = {k.lower(): k for k in known}
    if name.replace("_", "").lower() in folded:
        return folded[name.replace("_", "").lower()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return close[0] if close else None


def errors_from_pydantic(
    exc: pydantic.ValidationError,
    prefix: str = "",
    model: type[pydantic.BaseModel] | None = None,
) -> list[FieldError]:
    """Field-named errors; with ``model`` (the one validated), an unknown field also gets the
    known field it was probably meant as ("unknown field; did you mean maxIterations?")."""
    out = []
    for e in exc.errors():
        message = _message(e)
        loc = e["loc"]
        if e["type"] == "extra_forbidden" and model is not None and loc:
            known = _fields_at(model, loc[:-1])
            meant = suggest_field(str(loc[-1]), known)
            if meant is not None:
                message += f"; did you mean {meant}?"
        out.append(FieldError(format_loc(loc, prefix), message))
    return out


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


class NotImported(BaseNode[NodeConfig]):
    """Stands for a user's node class of a loop this process does not run: a hub runs no node
    and a loop's pod runs one loop, so neither imports (nor needs the packages of) the others."""

    def __init__(self, config: NodeConfig, context: Any = None) -> None:
        raise RuntimeError("this node's class was not imported in this process (another loop's)")


NotImported.kinds = frozenset(NodeKind)


def importable_folder(path: str | Path) -> None:
    """Make node modules beside a workflow file (and in the working directory) importable,
    as they would be when running a script there; process loops inherit the same path."""
    for folder in (str(Path(path).resolve().parent), os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _builtin(name: str) -> type[BaseNode[Any]] | None:
    found = getattr(_builtins, name, None)
    if isinstance(found, type) and issubclass(found, BaseNode) and name in _builtins.__all__:
        return found
    return None


def resolve_class(path: str) -> type[BaseNode[Any]]:
    """'pkg.mod:Class' (or a built-in's name) -> the node class; ValueError says what failed."""
    if ":" not in path:
        found = _builtin(path)
        if found is None:
            raise ValueError(
                f"{path!r} is neither 'package.module:Class' nor a built-in node "
                f"(built-ins: {', '.join(_builtin_names())})"
            )
        return found
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exc:  # a module that exits on import is a bad class, not our exit
        raise ValueError(
            f"cannot import module {module_name!r}: it called sys.exit({exc.code!r})"
        ) from None
    except KeyboardInterrupt:
        raise ValueError(
            f"cannot import module {module_name!r}: it raised KeyboardInterrupt"
        ) from None
    except Exception as exc:  # an import can fail in any way the module's code does
        raise ValueError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, BaseNode)):
        raise ValueError(f"{path!r} is not a node class (a subclass of ostinato.BaseNode)")
    return obj


def _builtin_names() -> list[str]:
    return list(_builtins.__all__)


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
        if spec.class_ is not None:
            errors.append(FieldError(f"{path}.class", "a queue node takes no class"))
        for key in ("queue", "role"):
            if key in spec.config:
                errors.append(FieldError(f"{path}.config.{key}", "set by the node's 'queue' field"))
        if len(errors) > count:
            return None
        role, name = ("read", ref.read) if ref.read is not None else ("write", ref.write)
        try:
            qconfig = QueueConfig.model_validate({**spec.config, "queue": name, "role": role})
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
        for r in range(1, lp.replicas):
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
