"""Node classes and decorated functions the spec tests refer to by import path.

Workflow documents name them as ``tests.spec.nodes:Name``; keep names stable.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ostinato import (
    BlockingNode,
    NodeConfig,
    NodeData,
    NonBlockingNode,
    ProducerNode,
    blocking,
    non_blocking,
    producer,
)


class MyConfig(NodeConfig):
    scale_factor: float = Field(1.0, gt=0)
    label_text: str = "node"
    code: str = Field("AB", pattern=r"^[A-Z]+$")


class OtherConfig(NodeConfig):
    other: int = 0


class Source(ProducerNode[MyConfig]):
    def produce(self) -> float:
        return self.config.scale_factor


class OnlyBlocking(BlockingNode[MyConfig]):
    def process(self, data: NodeData) -> float:
        return float(data.payload) * self.config.scale_factor


class OnlyNonBlocking(NonBlockingNode[NodeConfig]):
    def process(self, data: NodeData) -> None:
        return None


class Both(BlockingNode[MyConfig], NonBlockingNode[MyConfig]):
    def process(self, data: NodeData) -> NodeData:
        return data


class BothChild(Both):
    """Inherits both kinds and the config class of :class:`Both`."""


class Plain(BlockingNode):
    """No generic argument: the config is the empty NodeConfig."""

    def process(self, data: NodeData) -> object:
        return data.payload


class Explicit(BlockingNode[MyConfig]):
    """An explicit ``config_class`` wins over the generic argument."""

    config_class = OtherConfig


class ExplicitChild(Explicit):
    """Should inherit ``OtherConfig`` from its parent (see test_decorators)."""


class NotANode:
    """A class, but not a node."""


class Outer:
    """Node classes may be nested: ``tests.spec.nodes:Outer.Inner``."""

    class Inner(BlockingNode[MyConfig]):
        def process(self, data: NodeData) -> object:
            return data.payload


def plain_function(data: NodeData) -> object:
    """A function that was never decorated: not a node."""
    return data


# -- decorated functions -----------------------------------------------------------------------

RECORDED: list[Any] = []


@producer
def tick() -> int:
    """Produces 1."""
    return 1


@producer
def tick_with_config(config: NodeConfig) -> NodeConfig:
    return config


@producer(config=MyConfig)
def tick_configured(config: MyConfig) -> float:
    return config.scale_factor


@producer
async def async_tick() -> int:
    return 2


@producer(config=MyConfig)
async def async_tick_configured(config: MyConfig) -> str:
    return config.label_text


@blocking
def double(data: NodeData) -> int:
    """Doubles the payload."""
    return int(data.payload) * 2


@blocking(config=MyConfig)
def scale(data: NodeData, config: MyConfig) -> float:
    return float(data.payload) * config.scale_factor


@blocking
async def async_double(data: NodeData) -> int:
    return int(data.payload) * 2


@blocking(config=MyConfig)
async def async_scale(data: NodeData, config: MyConfig) -> float:
    return float(data.payload) * config.scale_factor


@non_blocking
def record(data: NodeData) -> None:
    RECORDED.append(data.payload)


@non_blocking(config=MyConfig)
def record_labelled(data: NodeData, config: MyConfig) -> None:
    RECORDED.append((config.label_text, data.payload))


@non_blocking
async def async_record(data: NodeData) -> None:
    RECORDED.append(data.payload)


@non_blocking(config=MyConfig)
async def async_record_labelled(data: NodeData, config: MyConfig) -> None:
    RECORDED.append((config.label_text, data.payload))
