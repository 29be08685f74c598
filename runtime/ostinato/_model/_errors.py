"""Field-named, one-line errors: what every refusal of a workflow document is made of, from
pydantic's validation errors to a `did you mean` for a misspelt field."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic.alias_generators import to_camel

from ._spec import NAME_PATTERN

__all__ = [
    "FieldError",
    "WorkflowError",
    "errors_from_pydantic",
    "format_loc",
    "suggest_field",
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
