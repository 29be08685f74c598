"""Nodes for the autoscaling tests, besides those of tests/hub/nodes.py."""

from __future__ import annotations

from ostinato import BlockingNode, NodeConfig, NodeData


class ShiftConfig(NodeConfig):
    by: int


class Shift(BlockingNode[ShiftConfig]):
    """Adds ``by`` to an integer payload (a second writer's numbers after the first's)."""

    def process(self, data: NodeData) -> NodeData:
        return data.with_payload(data.payload + self.config.by)
