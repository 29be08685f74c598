"""Non-blocking nodes that submit their side effect (``_submitter``) instead of running a task:
accounted like any other call, retried on failure, settled at a stop, drained at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from ostinato import NodeConfig, NodeData, NonBlockingNode, load_workflow
from ostinato.lowlevel import LoopManager

N = 200
Done = Callable[[BaseException | None], None]


class Submits(NonBlockingNode[NodeConfig]):
    """Completes each call on a later turn of the loop, as a queue put's acknowledgement does.
    ``mode``: ``ok``; ``fail-odd`` (odd payloads fail when submitted, and their retry through
    ``process`` succeeds); ``never`` (no call ever completes)."""

    mode: ClassVar[str] = "ok"
    manager: ClassVar[LoopManager | None] = None
    stop_after: ClassVar[int | None] = None
    retried: ClassVar[list[int]] = []
    late: ClassVar[list[Done]] = []
    submitted: ClassVar[int] = 0

    def _submitter(self) -> Callable[[NodeData, Done], None]:
        return self._submit

    def _submit(self, data: NodeData, done: Done) -> None:
        Submits.submitted += 1
        if Submits.stop_after is not None and Submits.submitted == Submits.stop_after:
            assert Submits.manager is not None
            Submits.manager.stop()
        if Submits.mode == "never":
            Submits.late.append(done)
            return
        if Submits.mode == "fail-odd" and data.payload % 2:
            raise RuntimeError(f"refused {data.payload}")
        asyncio.get_running_loop().call_soon(done, None)

    async def process(self, data: NodeData) -> None:  # only ever a retry here
        Submits.retried.append(data.payload)


def run(mode: str, *, attempts: int = 1, stop_after: int | None = None) -> LoopManager:
    plan = load_workflow(
        {
            "apiVersion": "ostinato.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "s"},
            "spec": {
                "loops": [
                    {
                        "name": "l",
                        "drainTimeoutSeconds": 0.5,
                        "producer": {
                            "name": "p",
                            "class": "CounterProducer",
                            "config": {"start": 1, "count": N},
                        },
                        "nodes": [
                            {
                                "name": "fx",
                                "kind": "nonBlocking",
                                "class": f"{__name__}:Submits",
                                "maxInFlight": 10_000,
                                "retry": {"maxAttempts": attempts, "initialBackoffSeconds": 0},
                            }
                        ],
                    }
                ]
            },
        }
    )
    manager = LoopManager(plan.loop("l"), workflow="s")
    Submits.mode, Submits.manager, Submits.stop_after = mode, manager, stop_after
    Submits.retried, Submits.late, Submits.submitted = [], [], 0
    manager.run_sync()
    return manager


def fx(manager: LoopManager) -> Any:
    (node,) = [n for n in manager.status().nodes if n.name == "fx"]
    return node


@pytest.mark.timeout(30)
def test_submitted_calls_are_counted_and_drained_at_the_end() -> None:
    manager = run("ok")
    node = fx(manager)
    assert (manager.iterations, node.calls, node.errors, node.in_flight) == (N, N, 0, 0)
    assert Submits.retried == []  # no task ran the node's process
    assert "abandoned 0" in (manager.status().reason or "")


@pytest.mark.timeout(30)
def test_a_failed_submission_is_retried_through_process() -> None:
    manager = run("fail-odd", attempts=2)
    node = fx(manager)
    assert sorted(Submits.retried) == list(range(1, N + 1, 2))
    assert (node.calls, node.errors, node.retries, node.in_flight) == (N, 0, N // 2, 0)


@pytest.mark.timeout(30)
def test_a_failed_submission_without_retries_is_an_error() -> None:
    manager = run("fail-odd")
    node = fx(manager)
    assert Submits.retried == []
    assert (node.calls, node.errors, node.in_flight) == (N, N // 2, 0)
    assert node.last_error == f"RuntimeError: refused {N - 1}"


@pytest.mark.timeout(30)
def test_a_stop_settles_what_was_submitted_and_ignores_late_completions() -> None:
    manager = run("never", stop_after=50)
    node = fx(manager)
    # Stopped at an iteration boundary after the 50th call; nothing waited for the drain
    # timeout, and the calls that never completed count as done (they were handed over).
    assert manager.iterations == Submits.submitted >= 50
    assert (node.calls, node.errors, node.in_flight) == (Submits.submitted, 0, 0)
    assert "abandoned 0" in (manager.status().reason or "")
    for done in Submits.late:  # completions after the stop change nothing
        done(None)
        done(RuntimeError("late"))
    node = fx(manager)
    assert (node.calls, node.errors, node.in_flight) == (Submits.submitted, 0, 0)


@pytest.mark.timeout(30)
def test_at_the_end_calls_that_never_complete_are_abandoned_after_the_drain_timeout() -> None:
    manager = run("never")
    node = fx(manager)
    assert manager.iterations == N
    assert node.in_flight == N
    assert f"abandoned {N}" in (manager.status().reason or "")
    for done in Submits.late:  # the connection closing fails them later: nothing changes
        done(RuntimeError("closed"))
    assert (fx(manager).calls, fx(manager).errors) == (0, 0)
