"""Reads a workflow document within stated bounds, so no input can hang or crash a command.

One place for every entry point (`validate`, `run`, `hub`, `loop`, the admission webhook): a
file larger than the API server would store, nesting deeper than any workflow needs, aliases
that expand into millions of nodes (a "billion laughs") and duplicate keys are refused with one
line naming the limit or the lines, before anything else looks at the document.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "DocumentError",
    "check_bounds",
    "read_document",
]

#: Largest workflow file, bytes: etcd's request limit, so what runs locally can be applied.
MAX_FILE_BYTES = 1536 * 1024
#: Deepest nesting of mappings and lists; a workflow with node configs uses about ten.
MAX_DEPTH = 100
#: Most values (mappings, lists, scalars) once aliases are expanded: 1,000 loops of ten nodes
#: each with a few settings stay well under it.
MAX_NODES = 500_000


class DocumentError(ValueError):
    """The text is not a workflow document we will read; the message is one line."""


class _Checks:
    """Refuses a key given twice in one mapping, naming both lines (mixed into both loaders)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        loader: Any = self  # a SafeConstructor once mixed in
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DocumentError(
                    f"line {line}: duplicate key {key!r} (first at line {seen[key]}): "
                    "one of them would be ignored"
                )
            seen[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        return mapping


class _Loader(_Checks, yaml.SafeLoader):
    """The pure-Python loader: its error messages are the ones we show (the same everywhere)."""


# libyaml's parser where PyYAML has it (its wheels do): 1,000 loops parse in 0.1 s, not 0.7 s.
# Only valid documents are parsed by it alone: an error is parsed again by _Loader, so the
# message does not depend on which parser this machine has.
_FastLoader: Any = (
    type("_FastLoader", (_Checks, yaml.CSafeLoader), {})
    if hasattr(yaml, "CSafeLoader")
    else _Loader
)


def _yaml_message(exc: yaml.YAMLError) -> str:
    """One line: 'line L, column C: not valid YAML: problem (context at line L, column C)'."""

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"not valid YAML: {exc}"
    text = f"{at(exc.problem_mark)}: not valid YAML: {exc.problem}"
    if exc.context:
        text += f" ({exc.context}"
        text += f" at {at(exc.context_mark)})" if exc.context_mark is not None else ")"
    return text


def read_document(path: str | Path) -> Any:
    """The parsed YAML or JSON of a file, within the bounds; DocumentError otherwise."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            f"{size} bytes: larger than the {MAX_FILE_BYTES} bytes a workflow may have "
            "(the API server's limit for one object)"
        )
    raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text: {exc}") from None
    try:
        try:
            doc = yaml.load(text, Loader=_FastLoader)
        except yaml.YAMLError:
            doc = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_message(exc)) from None
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    check_bounds(doc)
    return doc


def check_bounds(doc: Any) -> None:
    """DocumentError when the document, aliases expanded, is deeper than MAX_DEPTH or has more
    than MAX_NODES values. Shared values (YAML aliases) are sized once, so this takes time in
    the document's text, not in its expansion."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: (value, depth, children done?).
    stack: list[tuple[Any, int, bool]] = [(doc, 1, False)]
    while stack:
        value, depth, done = stack.pop()
        if not isinstance(value, (Mapping, list)):
            continue
        key = id(value)
        if key in sizes and not done:
            continue
        children = list(value.values()) if isinstance(value, Mapping) else value
        if not done:
            if depth > MAX_DEPTH:
                raise DocumentError(f"nested deeper than {MAX_DEPTH} levels")
            stack.append((value, depth, True))
            stack.extend((child, depth + 1, False) for child in children)
            continue
        total = 1
        for child in children:
            total += sizes.get(id(child), 1) if isinstance(child, (Mapping, list)) else 1
        if total > MAX_NODES:
            raise DocumentError(
                f"more than {MAX_NODES} values once its aliases are expanded: refused "
                "(a workflow needs far fewer)"
            )
        sizes[key] = total
