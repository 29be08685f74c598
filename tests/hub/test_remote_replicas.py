"""A hub learns a loop's replicas from those that report: scaling needs no hub restart."""

from __future__ import annotations

from typing import Any

import ostinato
from ostinato import DesiredState, LoopState, LoopStatus
from ostinato._hosting._remote import RemoteLoops

DOC = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "scaled"},
    "spec": {
        "loops": [
            {
                "name": "archive",
                "pool": "process",
                "replicas": 2,
                "producer": {"name": "count", "class": "CounterProducer"},
                "nodes": [{"name": "log", "kind": "blocking", "class": "LogSink"}],
            }
        ]
    },
}


class _Hub:
    """What RemoteLoops uses of a hub, recording what it sends."""

    alive = True

    def __init__(self) -> None:
        self.fallback: Any = None
        self.sent: list[tuple[bytes, str, dict[str, Any]]] = []

    def send(self, identity: bytes, kind: str, **fields: Any) -> None:
        self.sent.append((identity, kind, fields))

    def queue_statuses(self) -> list[Any]:
        return []


def _report(loops: RemoteLoops, replica: int, state: str = "running") -> None:
    status = LoopStatus(name="archive", replica=replica, pool="process", state=state)
    loops.receive(f"archive/{replica}".encode(), {"t": "status", "status": status.model_dump()})


def _archive(loops: RemoteLoops) -> dict[int, LoopState]:
    return {lp.replica: lp.state for lp in loops.status().loops if lp.name == "archive"}


def test_replicas_beyond_the_spec_the_hub_started_with_are_reported() -> None:
    plan = ostinato.load_workflow(DOC)
    loops = RemoteLoops(plan, _Hub(), lost_after=60)  # type: ignore[arg-type]
    assert _archive(loops) == {0: LoopState.PENDING, 1: LoopState.PENDING}
    for replica in (0, 1, 3):  # scaled to 4; replica 2 not connected yet
        _report(loops, replica)
    assert _archive(loops) == {
        0: LoopState.RUNNING,
        1: LoopState.RUNNING,
        2: LoopState.PENDING,
        3: LoopState.RUNNING,
    }


def test_a_loop_the_workflow_does_not_have_is_still_ignored() -> None:
    plan = ostinato.load_workflow(DOC)
    loops = RemoteLoops(plan, _Hub(), lost_after=60)  # type: ignore[arg-type]
    status = LoopStatus(name="nope", replica=0, pool="thread", state="running")
    loops.receive(b"x", {"t": "status", "status": status.model_dump()})
    assert "nope" not in {lp.name for lp in loops.status().loops}


def test_every_replica_shows_the_desired_state_and_is_told_it_in_its_words() -> None:
    """What was asked is each row's desiredState at once, connected or not; the replica is
    sent the same word (the wire's control message carries a DesiredState)."""
    plan = ostinato.load_workflow(DOC)
    hub = _Hub()
    loops = RemoteLoops(plan, hub, lost_after=60)  # type: ignore[arg-type]
    _report(loops, 0)
    assert loops.set_state("archive", DesiredState.PAUSED) == {"archive": "paused"}
    rows = {lp.replica: (lp.desired_state, lp.state) for lp in loops.status().loops}
    assert rows == {
        0: (DesiredState.PAUSED, LoopState.RUNNING),  # asked; its report comes at its boundary
        1: (DesiredState.PAUSED, LoopState.PENDING),
    }
    assert hub.sent == [(b"archive/0", "control", {"state": "paused"})]
