"""Nodes of the console's test workflow: one that fails while a file exists."""

from __future__ import annotations

from pathlib import Path

from ostinato import BlockingNode, NodeConfig, NodeData


class TripwireConfig(NodeConfig):
    path: str


class Tripwire(BlockingNode[TripwireConfig]):
    """Fails every call while the file at ``path`` exists, naming it; passes data on otherwise."""

    def process(self, data: NodeData) -> NodeData:
        if Path(self.config.path).exists():
            raise RuntimeError(f"tripwire {Path(self.config.path).name} is set")
        return data
