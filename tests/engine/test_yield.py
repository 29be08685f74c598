"""A fast loop batches its event-loop turns, but never leaves a non-blocking call waiting long."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ostinato import (
    NodeConfig,
    NodeData,
    NonBlockingNode,
    ProducerExhausted,
    ProducerNode,
    load_workflow,
)
from ostinato._engine._loop import YIELD_EVERY
from ostinato.lowlevel import LoopManager

N = 2000


class Fast(ProducerNode[NodeConfig]):
    def setup(self) -> None:
        self.n = 0

    def produce(self) -> int:
        if self.n >= N:
            raise ProducerExhausted
        self.n += 1
        return self.n


class Lag(NonBlockingNode[NodeConfig]):
    """Records how many iterations the loop had finished when each call started."""

    manager: ClassVar[LoopManager | None] = None
    lags: ClassVar[list[int]] = []

    async def process(self, data: NodeData) -> None:
        assert Lag.manager is not None
        Lag.lags.append(Lag.manager.iterations - data.iteration)


@pytest.mark.timeout(60)
def test_a_non_blocking_call_starts_within_yield_every_iterations() -> None:
    plan = load_workflow(
        {
            "apiVersion": "ostinato.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "y"},
            "spec": {
                "loops": [
                    {
                        "name": "fast",
                        "producer": {"name": "p", "class": f"{__name__}:Fast"},
                        "nodes": [
                            {
                                "name": "lag",
                                "kind": "nonBlocking",
                                "class": f"{__name__}:Lag",
                                "maxInFlight": 10_000,
                            }
                        ],
                    }
                ]
            },
        }
    )
    manager = LoopManager(plan.loop("fast"), workflow="y")
    Lag.manager, Lag.lags = manager, []
    manager.run_sync()
    assert manager.iterations == N
    assert len(Lag.lags) == N  # every call ran (the drain waits for the rest)
    # The loop runs ahead of its calls (that is the point of batching the turns), but a call
    # never waits more than YIELD_EVERY iterations for the loop to let it start.
    assert max(Lag.lags) <= YIELD_EVERY
    assert max(Lag.lags) > 1  # batched: not one event-loop turn per iteration
