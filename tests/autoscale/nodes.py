"""Nodes for the autoscaling tests, besides those of tests/hub/nodes.py."""

from __future__ import annotations

import time
from typing import IO

from ostinato import BlockingNode, NodeConfig, NodeData, NonBlockingNode


class ShiftConfig(NodeConfig):
    by: int


class Shift(BlockingNode[ShiftConfig]):
    """Adds ``by`` to an integer payload (a second writer's numbers after the first's)."""

    def process(self, data: NodeData) -> NodeData:
        return data.with_payload(data.payload + self.config.by)


class LateJournalConfig(NodeConfig):
    journal: str
    seconds: float = 0.05


class LateJournal(NonBlockingNode[LateJournalConfig]):
    """A side effect that takes ``seconds`` and then appends the payload to ``journal``: what a
    retiring replica must drain before it stops, or the line is missing."""

    def setup(self) -> None:
        self.f: IO[str] = open(self.config.journal, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def process(self, data: NodeData) -> None:
        time.sleep(self.config.seconds)
        self.f.write(f"{data.payload}\n")

    def teardown(self) -> None:
        self.f.close()
