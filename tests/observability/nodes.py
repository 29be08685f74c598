"""Nodes for the observability tests."""

from __future__ import annotations

import threading

from ostinato import BlockingNode, NodeConfig, NodeData


class FailEveryConfig(NodeConfig):
    every: int = 5


class FailEvery(BlockingNode[FailEveryConfig]):
    """Raises on every ``every``-th call (5th, 10th, ...); passes the data on otherwise."""

    def setup(self) -> None:
        self.calls = 0

    def process(self, data: NodeData) -> NodeData:
        self.calls += 1
        if self.calls % self.config.every == 0:
            raise RuntimeError(f"planned failure at call {self.calls}")
        return data


#: Gates a test opens for nodes in its own process (thread and asyncio pools).
GATES: dict[str, threading.Event] = {}


class GatedSetupConfig(NodeConfig):
    gate: str
    timeout: float = 30.0


class GatedSetup(BlockingNode[GatedSetupConfig]):
    """Its setup waits for ``GATES[gate]``: the loop stays pending until the test opens it."""

    def setup(self) -> None:
        GATES.setdefault(self.config.gate, threading.Event()).wait(self.config.timeout)

    def process(self, data: NodeData) -> NodeData:
        return data
