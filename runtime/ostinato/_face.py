"""Makes the public faces (``ostinato``, ``ostinato.lowlevel``) report themselves as the home of
what they export, and import on first use the names whose modules bring ZeroMQ.

A traceback or ``repr`` then says ``ostinato.LoopState``, not ``ostinato._model._status.LoopState``
(as httpx does), so users never learn a private module's name; and validating a workflow
imports no messaging code (tests/spec/test_no_zmq.py).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, MutableMapping
from importlib import import_module
from typing import Any

__all__ = ["adopt", "lazy_getattr"]


def _adopt_one(obj: Any, face: str) -> None:
    if isinstance(obj, type | types.FunctionType) and obj.__module__.startswith("ostinato."):
        obj.__module__ = face


def adopt(namespace: Mapping[str, Any], names: list[str], face: str) -> None:
    """Set ``__module__`` to ``face`` on the classes and functions named (enums included)."""
    for name in names:
        _adopt_one(namespace.get(name), face)


def lazy_getattr(
    namespace: MutableMapping[str, Any], face: str, lazy: Mapping[str, tuple[str, str]]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing each of ``lazy`` (name -> (module, attribute)) on
    first use, adopted by ``face`` and kept in ``namespace`` so the next access is plain."""

    def getattr_(name: str) -> Any:
        try:
            module, attr = lazy[name]
        except KeyError:
            raise AttributeError(f"module {face!r} has no attribute {name!r}") from None
        value = getattr(import_module(module, "ostinato"), attr)
        _adopt_one(value, face)
        namespace[name] = value
        return value

    return getattr_
