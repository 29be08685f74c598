"""``NodeContext.wait(fut, owned=True)``: the loop interrupts such a wait by resolving the
node's own future with False: a stop always, a pause unless ``stop_only``."""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

import pytest

from ostinato import BlockingNode, LoopState, NodeConfig, NodeData, ProducerNode, load_workflow
from ostinato.lowlevel import LoopManager


class One(ProducerNode[NodeConfig]):
    def produce(self) -> int:
        return 1


class WaitConfig(NodeConfig):
    stop_only: bool = False


class Waits(BlockingNode[WaitConfig]):
    """Waits on a future of its own that only the test resolves; records each outcome."""

    waiting: ClassVar[threading.Event] = threading.Event()
    outcomes: ClassVar[list[tuple[bool, bool]]] = []
    fut: ClassVar[asyncio.Future[bool] | None] = None
    loop: ClassVar[asyncio.AbstractEventLoop | None] = None

    async def process(self, data: NodeData) -> NodeData:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        Waits.fut, Waits.loop = fut, asyncio.get_running_loop()
        Waits.waiting.set()
        ok = await self.context.wait(fut, stop_only=self.config.stop_only, owned=True)
        Waits.outcomes.append((ok, fut.result()))
        return data


def manager(stop_only: bool) -> LoopManager:
    plan = load_workflow(
        {
            "apiVersion": "ostinato.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "o"},
            "spec": {
                "loops": [
                    {
                        "name": "l",
                        "producer": {"name": "p", "class": f"{__name__}:One"},
                        "nodes": [
                            {
                                "name": "w",
                                "kind": "blocking",
                                "class": f"{__name__}:Waits",
                                "config": {"stop_only": stop_only},
                            }
                        ],
                    }
                ]
            },
        }
    )
    Waits.waiting, Waits.outcomes = threading.Event(), []
    return LoopManager(plan.loop("l"), workflow="o")


def start(m: LoopManager) -> threading.Thread:
    thread = threading.Thread(target=m.run_sync, daemon=True)
    thread.start()
    assert Waits.waiting.wait(10)
    return thread


def stopped(m: LoopManager, thread: threading.Thread) -> bool:
    """Stop the loop; whether its thread has ended within 10 s."""
    m.stop()
    thread.join(10)
    return not thread.is_alive()


def resolve() -> None:
    assert Waits.loop is not None
    assert Waits.fut is not None
    fut = Waits.fut
    Waits.loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(True))


@pytest.mark.timeout(30)
def test_a_pause_interrupts_an_owned_wait_unless_stop_only() -> None:
    m = manager(stop_only=False)
    thread = start(m)
    m.pause()
    assert m.wait_for_state(LoopState.PAUSED, timeout=10)
    assert Waits.outcomes == [(False, False)]  # interrupted: the future holds False
    assert stopped(m, thread)


@pytest.mark.timeout(30)
def test_a_stop_only_wait_outlasts_a_pause_and_ends_when_resolved() -> None:
    m = manager(stop_only=True)
    thread = start(m)
    m.pause()
    # The pause waits for the iteration, which waits for its future: nothing interrupted it.
    assert not m.wait_for_state(LoopState.PAUSED, timeout=0.3)
    assert Waits.outcomes == []
    resolve()
    assert m.wait_for_state(LoopState.PAUSED, timeout=10)
    assert Waits.outcomes == [(True, True)]
    assert stopped(m, thread)


@pytest.mark.timeout(30)
def test_a_stop_interrupts_a_stop_only_owned_wait() -> None:
    m = manager(stop_only=True)
    thread = start(m)
    assert stopped(m, thread)
    assert Waits.outcomes == [(False, False)]
