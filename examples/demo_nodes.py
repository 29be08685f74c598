"""Nodes for the demo workflow: a sensor reading, a smoothing filter, an alarm check."""

from __future__ import annotations

import asyncio
import math

from pydantic import Field

from ostinato import BlockingNode, NodeConfig, NodeData, blocking


class SensorConfig(NodeConfig):
    amplitude: float = Field(10.0, description="Peak of the simulated signal.")
    period_ticks: int = Field(20, ge=2, description="Ticks per full sine period.")


class Sensor(BlockingNode[SensorConfig]):
    """Turns a tick number into a simulated sensor reading (a sine wave)."""

    run_inline = True

    def process(self, data: NodeData) -> float:
        tick = int(data.payload)
        phase = 2 * math.pi * tick / self.config.period_ticks
        return round(self.config.amplitude * math.sin(phase), 3)


class SmoothConfig(NodeConfig):
    alpha: float = Field(0.3, gt=0, le=1, description="Weight of the newest reading.")


class Smooth(BlockingNode[SmoothConfig]):
    """Exponential moving average; keeps its state across iterations (and pauses)."""

    def setup(self) -> None:
        self.value: float | None = None

    async def process(self, data: NodeData) -> dict[str, float]:
        await asyncio.sleep(0)  # an async node: runs on the loop's event loop
        reading = float(data.payload)
        self.value = (
            reading
            if self.value is None
            else (self.config.alpha * reading + (1 - self.config.alpha) * self.value)
        )
        return {"reading": reading, "smoothed": round(self.value, 3)}


@blocking
def square(data: NodeData) -> int:
    """A plain function as a node: squares the counter."""
    return int(data.payload) ** 2
