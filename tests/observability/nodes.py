"""Nodes for the observability tests."""

from __future__ import annotations

import os
import sys
import threading
import time

from ostinato import BlockingNode, NodeConfig, NodeData, NonBlockingNode


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


class SleepConfig(NodeConfig):
    seconds: float = 0.002


class Sleep(BlockingNode[SleepConfig]):
    """Sleeps ``seconds`` and passes the data on: a node of known duration."""

    def process(self, data: NodeData) -> NodeData:
        time.sleep(self.config.seconds)
        return data


class PassOn(BlockingNode[NodeConfig]):
    """Returns its input: a node that takes next to no time."""

    def process(self, data: NodeData) -> NodeData:
        return data


class SleepEffect(NonBlockingNode[SleepConfig]):
    """A non-blocking side effect of known duration."""

    def process(self, data: NodeData) -> None:
        time.sleep(self.config.seconds)


class FlagConfig(NodeConfig):
    flag: str


class FailWhile(BlockingNode[FlagConfig]):
    """Raises while the file ``flag`` exists (a switch a test flips from outside, whatever
    process the node runs in); passes the data on otherwise."""

    def process(self, data: NodeData) -> NodeData:
        if os.path.exists(self.config.flag):
            raise RuntimeError(f"failing while {self.config.flag} exists")
        return data


class ChattyConfig(NodeConfig):
    shout: bool = False


class Chatty(BlockingNode[ChattyConfig]):
    """Logs one INFO line per call through its own logger (``ostinato.node.<loop>.<node>``);
    with ``shout``, writes one plain line straight to stderr at setup, past logging."""

    def setup(self) -> None:
        if self.config.shout:
            print(f"plain stderr line from {self.context.loop}", file=sys.stderr, flush=True)

    def process(self, data: NodeData) -> NodeData:
        self.logger.info("processing iteration %d", data.iteration)
        return data
