"""Finds the class a node's `class` field names: a built-in by its name, a user's by
`package.module:Class`, with any failure of the import as one line naming it."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from . import _builtins
from ._nodes import BaseNode, NodeConfig, NodeKind

__all__ = ["NotImported", "importable_folder", "resolve_class"]


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
