"""Decorators that turn plain functions into node classes, for nodes that need no state."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, overload

from ._nodes import BaseNode, BlockingNode, NodeConfig, NodeData, NonBlockingNode, ProducerNode

__all__ = ["blocking", "non_blocking", "producer"]

Fn = Callable[..., Any]


def _wants_config(fn: Fn, data_args: int) -> bool:
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) not in (data_args, data_args + 1):
        raise TypeError(
            f"{fn.__qualname__} must take {data_args} argument(s)"
            f"{' (data)' if data_args else ''}, plus optionally the node's config"
        )
    return len(params) == data_args + 1


def _make(
    fn: Fn, base: type[BaseNode[Any]], method: str, config: type[NodeConfig]
) -> type[BaseNode[Any]]:
    data_args = 0 if method == "produce" else 1
    with_config = _wants_config(fn, data_args)
    is_async = inspect.iscoroutinefunction(fn)

    if method == "produce":
        if is_async:

            async def call(self: BaseNode[Any]) -> object:
                return await (fn(self.config) if with_config else fn())
        else:

            def call(self: BaseNode[Any]) -> object:  # type: ignore[misc]
                return fn(self.config) if with_config else fn()
    elif is_async:

        async def call(self: BaseNode[Any], data: NodeData) -> object:  # type: ignore[misc]
            return await (fn(data, self.config) if with_config else fn(data))
    else:

        def call(self: BaseNode[Any], data: NodeData) -> object:  # type: ignore[misc]
            return fn(data, self.config) if with_config else fn(data)

    namespace: dict[str, Any] = {
        method: call,
        "config_class": config,
        "__module__": fn.__module__,
        "__qualname__": fn.__qualname__,
        "__doc__": fn.__doc__,
        "__wrapped__": fn,
    }
    return type(fn.__name__, (base,), namespace)


@overload
def producer(fn: Fn, /) -> type[ProducerNode[Any]]: ...
@overload
def producer(*, config: type[NodeConfig]) -> Callable[[Fn], type[ProducerNode[Any]]]: ...
def producer(fn: Fn | None = None, /, *, config: type[NodeConfig] = NodeConfig) -> Any:
    """``@producer`` makes a :class:`ProducerNode` of ``fn()`` or ``fn(config)``."""
    if fn is None:
        return lambda f: _make(f, ProducerNode, "produce", config)
    return _make(fn, ProducerNode, "produce", config)


@overload
def blocking(fn: Fn, /) -> type[BlockingNode[Any]]: ...
@overload
def blocking(*, config: type[NodeConfig]) -> Callable[[Fn], type[BlockingNode[Any]]]: ...
def blocking(fn: Fn | None = None, /, *, config: type[NodeConfig] = NodeConfig) -> Any:
    """``@blocking`` makes a :class:`BlockingNode` of ``fn(data)`` or ``fn(data, config)``."""
    if fn is None:
        return lambda f: _make(f, BlockingNode, "process", config)
    return _make(fn, BlockingNode, "process", config)


@overload
def non_blocking(fn: Fn, /) -> type[NonBlockingNode[Any]]: ...
@overload
def non_blocking(*, config: type[NodeConfig]) -> Callable[[Fn], type[NonBlockingNode[Any]]]: ...
def non_blocking(fn: Fn | None = None, /, *, config: type[NodeConfig] = NodeConfig) -> Any:
    """``@non_blocking`` makes a :class:`NonBlockingNode` of ``fn(data)`` or ``fn(data, cfg)``."""
    if fn is None:
        return lambda f: _make(f, NonBlockingNode, "process", config)
    return _make(fn, NonBlockingNode, "process", config)
