"""@producer, @blocking, @non_blocking, and how node classes get their kinds and config."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

import ostinato
from ostinato import (
    BaseNode,
    BlockingNode,
    NodeConfig,
    NodeData,
    NodeKind,
    NonBlockingNode,
    ProducerNode,
    blocking,
    non_blocking,
    producer,
)
from ostinato._model import _builtins as builtins
from ostinato._model._classes import resolve_class
from ostinato._model._nodes import is_async_callable

from . import nodes
from .nodes import MyConfig

P, B, NB = NodeKind.PRODUCER, NodeKind.BLOCKING, NodeKind.NON_BLOCKING


def call(node: BaseNode[Any], method: str, *args: Any) -> Any:
    result = getattr(node, method)(*args)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


DECORATED = [
    # name, base, kind, config class, async
    ("tick", ProducerNode, P, NodeConfig, False),
    ("tick_with_config", ProducerNode, P, NodeConfig, False),
    ("tick_configured", ProducerNode, P, MyConfig, False),
    ("async_tick", ProducerNode, P, NodeConfig, True),
    ("async_tick_configured", ProducerNode, P, MyConfig, True),
    ("double", BlockingNode, B, NodeConfig, False),
    ("scale", BlockingNode, B, MyConfig, False),
    ("async_double", BlockingNode, B, NodeConfig, True),
    ("async_scale", BlockingNode, B, MyConfig, True),
    ("record", NonBlockingNode, NB, NodeConfig, False),
    ("record_labelled", NonBlockingNode, NB, MyConfig, False),
    ("async_record", NonBlockingNode, NB, NodeConfig, True),
    ("async_record_labelled", NonBlockingNode, NB, MyConfig, True),
]


@pytest.mark.parametrize(
    ("name", "base", "kind", "config_class", "is_async"),
    [pytest.param(*row, id=row[0]) for row in DECORATED],
)
def test_decorated_function_is_a_node_class(
    name: str, base: type, kind: NodeKind, config_class: type, is_async: bool
) -> None:
    cls = getattr(nodes, name)
    assert isinstance(cls, type)
    assert issubclass(cls, base)
    assert cls.kinds == frozenset({kind})
    assert cls.config_class is config_class
    assert (cls.__name__, cls.__qualname__, cls.__module__) == (name, name, "tests.spec.nodes")
    assert cls.__wrapped__.__name__ == name
    assert inspect.iscoroutinefunction(cls.__wrapped__) is is_async
    method = "produce" if kind is P else "process"
    assert inspect.iscoroutinefunction(getattr(cls, method)) is is_async
    assert is_async_callable(getattr(cls(cls.config_class()), method)) is is_async
    # it resolves by import path, the way a workflow document names it
    assert resolve_class(f"tests.spec.nodes:{name}") is cls


def test_docstring_is_kept() -> None:
    assert nodes.tick.__doc__ == "Produces 1."
    assert nodes.double.__doc__ == "Doubles the payload."


def test_producers_call_the_function() -> None:
    cfg = MyConfig(scale_factor=2.5, label_text="hi")
    assert call(nodes.tick(NodeConfig()), "produce") == 1
    assert call(nodes.async_tick(NodeConfig()), "produce") == 2
    assert call(nodes.tick_configured(cfg), "produce") == 2.5
    assert call(nodes.async_tick_configured(cfg), "produce") == "hi"
    plain = NodeConfig()
    assert call(nodes.tick_with_config(plain), "produce") is plain


def test_blocking_nodes_call_the_function() -> None:
    data = NodeData(payload=4)
    cfg = MyConfig(scale_factor=0.5)
    assert call(nodes.double(NodeConfig()), "process", data) == 8
    assert call(nodes.async_double(NodeConfig()), "process", data) == 8
    assert call(nodes.scale(cfg), "process", data) == 2.0
    assert call(nodes.async_scale(cfg), "process", data) == 2.0


def test_non_blocking_nodes_call_the_function() -> None:
    nodes.RECORDED.clear()
    cfg = MyConfig(label_text="side")
    call(nodes.record(NodeConfig()), "process", NodeData(payload="a"))
    call(nodes.async_record(NodeConfig()), "process", NodeData(payload="b"))
    call(nodes.record_labelled(cfg), "process", NodeData(payload="c"))
    call(nodes.async_record_labelled(cfg), "process", NodeData(payload="d"))
    assert nodes.RECORDED == ["a", "b", ("side", "c"), ("side", "d")]
    nodes.RECORDED.clear()


def test_decorated_functions_in_a_workflow() -> None:
    doc = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fns"},
        "spec": {
            "loops": [
                {
                    "name": "fns",
                    "producer": {
                        "name": "tick",
                        "class": "tests.spec.nodes:tick_configured",
                        "config": {"scaleFactor": 3},
                    },
                    "nodes": [
                        {
                            "name": "scale",
                            "kind": "blocking",
                            "class": "tests.spec.nodes:async_scale",
                            "config": {"scaleFactor": 2, "labelText": "x"},
                        },
                        {"name": "rec", "kind": "nonBlocking", "class": "tests.spec.nodes:record"},
                    ],
                }
            ]
        },
    }
    loop = ostinato.load_workflow(doc).loops[0]
    assert loop.producer.cls is nodes.tick_configured
    assert loop.producer.config == MyConfig(scale_factor=3)
    assert [(n.cls, n.kind) for n in loop.chain] == [(nodes.async_scale, B), (nodes.record, NB)]
    assert loop.chain[0].config == MyConfig(scale_factor=2, label_text="x")


def test_config_keyword_validates_the_document_config() -> None:
    doc = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fns"},
        "spec": {
            "loops": [
                {
                    "name": "fns",
                    "producer": {"name": "tick", "class": "tests.spec.nodes:tick"},
                    "nodes": [
                        {
                            "name": "scale",
                            "kind": "blocking",
                            "class": "tests.spec.nodes:scale",
                            "config": {"scaleFactor": 0},
                        },
                        {
                            "name": "double",
                            "kind": "blocking",
                            "class": "tests.spec.nodes:double",
                            "config": {"scaleFactor": 2},
                        },
                    ],
                }
            ]
        },
    }
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(doc)
    assert [str(e) for e in info.value.errors] == [
        "spec.loops[0].nodes[0].config.scaleFactor: must be > 0",
        # a function decorated without config= takes no configuration at all
        "spec.loops[0].nodes[1].config.scaleFactor: unknown field",
    ]


# -- functions of the wrong shape ----------------------------------------------------------


def no_args() -> None: ...
def one_arg(a: Any) -> None: ...
def two_args(a: Any, b: Any) -> None: ...
def three_args(a: Any, b: Any, c: Any) -> None: ...
async def async_three_args(a: Any, b: Any, c: Any) -> None: ...


@pytest.mark.parametrize(
    ("decorator", "fn", "expected"),
    [
        pytest.param(producer, two_args, "must take 0 argument(s), plus", id="producer-2"),
        pytest.param(producer, three_args, "must take 0 argument(s)", id="producer-3"),
        pytest.param(blocking, no_args, "must take 1 argument(s) (data), plus", id="blocking-0"),
        pytest.param(blocking, three_args, "must take 1 argument(s) (data)", id="blocking-3"),
        pytest.param(non_blocking, no_args, "must take 1 argument(s) (data)", id="non-blocking-0"),
        pytest.param(
            non_blocking, async_three_args, "must take 1 argument(s) (data)", id="async-3"
        ),
    ],
)
def test_wrong_number_of_parameters(decorator: Any, fn: Any, expected: str) -> None:
    with pytest.raises(TypeError, match=rf"^{fn.__qualname__} ") as info:
        decorator(fn)
    assert expected in str(info.value)
    assert "optionally the node's config" in str(info.value)
    with pytest.raises(TypeError, match=fn.__qualname__):
        decorator(config=MyConfig)(fn)


def test_keyword_only_parameters_do_not_count() -> None:
    def fn(data: NodeData, *, extra: int = 1) -> int:
        return extra

    cls = blocking(fn)
    assert call(cls(NodeConfig()), "process", NodeData()) == 1


# -- node classes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kinds", "config_class"),
    [
        pytest.param(nodes.Source, {P}, MyConfig, id="producer-generic"),
        pytest.param(nodes.OnlyBlocking, {B}, MyConfig, id="blocking-generic"),
        pytest.param(nodes.OnlyNonBlocking, {NB}, NodeConfig, id="non-blocking-generic"),
        pytest.param(nodes.Both, {B, NB}, MyConfig, id="both"),
        pytest.param(nodes.BothChild, {B, NB}, MyConfig, id="both-subclass"),
        pytest.param(nodes.Plain, {B}, NodeConfig, id="no-generic-argument"),
        pytest.param(nodes.Explicit, {B}, nodes.OtherConfig, id="explicit-config-class"),
        pytest.param(nodes.Outer.Inner, {B}, MyConfig, id="nested"),
        pytest.param(ostinato.IntervalProducer, {P}, builtins.IntervalConfig, id="ip"),
        pytest.param(ostinato.LogSink, {B, NB}, builtins.LogSinkConfig, id="log"),
        pytest.param(ostinato.SQLiteWriter, {NB, B}, builtins.SQLiteConfig, id="db"),
    ],
)
def test_node_class_kinds_and_config(cls: Any, kinds: set[NodeKind], config_class: type) -> None:
    assert cls.kinds == frozenset(kinds)
    assert cls.config_class is config_class


def test_generic_argument_gives_the_config_class() -> None:
    class Cfg(NodeConfig):
        x: int = 1

    class Node(BlockingNode[Cfg]):
        pass

    class Later(Node):
        pass

    assert Node.config_class is Cfg
    assert Later.config_class is Cfg
    assert Node.kinds == frozenset({B})


def test_base_classes_have_no_kinds_of_their_own() -> None:
    assert BaseNode.kinds == frozenset()
    assert BaseNode.config_class is NodeConfig


def test_subclass_inherits_an_explicit_config_class() -> None:
    assert nodes.ExplicitChild.config_class is nodes.OtherConfig
