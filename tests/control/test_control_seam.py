"""One control seam: POST /control means the same on `ostinato run` and on `ostinato hub`.

What was asked is kept per loop and reported as each replica's ``desiredState`` beside the
``state`` it is observed in, at once, even while the loop still finishes its iteration; the
answer is the same ControlReply in both modes. The hub mode here is a real hub, RemoteLoops and
a replica wired to it by ``attach``, in this process (inproc), as ``ostinato loop`` is.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ostinato import DesiredState, LoopState, WorkflowOrchestrator, load_workflow
from ostinato._engine._loop import LoopManager
from ostinato._hosting._remote import RemoteLoops
from ostinato._hosting._replica import attach, replica_identity
from ostinato._messaging._client import HubClient
from ostinato._messaging._hub import Hub
from ostinato._observe._http import ControlReply, ObservabilityServer
from tests.engine import nodes

WAIT = 30.0
TOKEN = "seam-control-token-0123456789"


def document(journal: str, gate: str) -> dict[str, Any]:
    n = "tests.engine.nodes:"
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "seam"},
        "spec": {
            "loops": [
                {
                    "name": "a",
                    "heartbeatSeconds": 0.1,
                    "producer": {
                        "name": "count",
                        "class": n + "Count",
                        "config": {"journal": journal, "tag": "count"},
                    },
                    "nodes": [
                        {
                            "name": "step",
                            "kind": "blocking",
                            "class": n + "Step",
                            "config": {
                                "journal": journal,
                                "tag": "step",
                                "gate": gate,
                                "wait_timeout": WAIT,
                            },
                        }
                    ],
                }
            ]
        },
    }


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@dataclass
class Mode:
    url: str
    #: Blocks until the replica itself (its engine) is in one of the states.
    wait_engine: Callable[[LoopState], bool]


def _local(doc: dict[str, Any]) -> Iterator[Mode]:
    with (
        WorkflowOrchestrator(doc) as orch,
        ObservabilityServer(orch, port=0, control_token=TOKEN) as server,
    ):
        handle = orch.loop("a")
        yield Mode(server.url, lambda s: handle.wait_for_state(s, timeout=WAIT))


def _hub(doc: dict[str, Any]) -> Iterator[Mode]:
    plan = load_workflow(doc)
    hub = Hub.for_workflow(plan)
    loops = RemoteLoops(plan, hub, lost_after=hub.lost_after)
    client = HubClient(hub.inproc, replica_identity("a", 0), loop="a", ctx=hub.ctx, heartbeat=0.1)
    manager = LoopManager(plan.loop("a"), workflow=plan.name, hub=client)
    attach(manager, client, ask_hub=WAIT)  # as `ostinato loop`: the hub says the state
    client.start()
    runner = threading.Thread(target=manager.run_sync, name="seam-replica", daemon=True)
    runner.start()
    try:
        with ObservabilityServer(loops, port=0, control_token=TOKEN) as server:
            yield Mode(server.url, lambda s: manager.wait_for_state(s, timeout=WAIT))
    finally:
        manager.stop()
        runner.join(WAIT)
        client.final = True
        client.close()
        hub.close()


@pytest.fixture(params=["local", "hub"])
def seam(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Mode, str, str]]:
    journal = str(tmp_path / "journal.log")
    gate = f"seam-{request.param}-{time.monotonic_ns()}"
    nodes.GATES[gate] = threading.Event()
    start = _local if request.param == "local" else _hub
    try:
        for mode in start(document(journal, gate)):
            yield mode, journal, gate
    finally:
        nodes.GATES.pop(gate).set()


def replica(url: str) -> dict[str, Any]:
    (lp,) = get(url + "/status")["loops"]
    return lp  # type: ignore[no-any-return]


def until(predicate: Callable[[], Any], what: str) -> Any:
    """The hub hears of a replica's state change by a message: poll its /status for it."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(90)
def test_what_was_asked_is_reported_beside_what_is_observed(seam: tuple[Mode, str, str]) -> None:
    mode, journal, gate = seam
    # The loop is inside its first iteration, held by the gate.
    assert nodes.wait_line(journal, "step start 1", WAIT)
    until(lambda: replica(mode.url)["state"] == "running", "the replica running")
    assert replica(mode.url)["desiredState"] == "running"

    code, reply = post(mode.url + "/control", {"loop": "a", "state": "paused"})
    assert code == 200
    assert ControlReply.model_validate(reply).loops == {"a": DesiredState.PAUSED}
    # Asked, not yet reached: the iteration is still running.
    now = replica(mode.url)
    assert (now["desiredState"], now["state"]) == ("paused", "running")

    nodes.GATES[gate].set()  # the iteration ends; the pause takes effect at the boundary
    assert mode.wait_engine(LoopState.PAUSED)
    until(lambda: replica(mode.url)["state"] == "paused", "the paused replica's report")
    assert replica(mode.url)["desiredState"] == "paused"

    code, reply = post(mode.url + "/control", {"state": "running"})
    assert code == 200
    assert reply == {"loops": {"a": "running"}}
    assert replica(mode.url)["desiredState"] == "running"
    assert mode.wait_engine(LoopState.RUNNING)

    code, reply = post(mode.url + "/control", {"loop": "zz", "state": "paused"})
    assert code == 404
    assert replica(mode.url)["desiredState"] == "running"


@pytest.mark.timeout(60)
def test_a_local_run_keeps_what_was_asked_not_what_it_infers(tmp_path: Path) -> None:
    """A stopped loop asked to run is reported as asked: running, beside its state stopped
    (the hub's answer too); the answer no longer depends on what the loops happen to do."""
    journal = str(tmp_path / "journal.log")
    doc = document(journal, "never-set")
    del doc["spec"]["loops"][0]["nodes"][0]["config"]["gate"]
    doc["spec"]["loops"].append({**doc["spec"]["loops"][0], "name": "held", "state": "stopped"})
    with WorkflowOrchestrator(doc) as orch:
        assert orch.desired() == {"a": "running", "held": "stopped"}
        assert orch.set_state("a", DesiredState.STOPPED) == {"a": "stopped", "held": "stopped"}
        assert orch.loop("a").join(WAIT)
        assert orch.set_state("a", DesiredState.RUNNING)["a"] == "running"
        a = orch.status().loop("a")
        assert (a.desired_state, a.state) == (DesiredState.RUNNING, LoopState.STOPPED)
        held = orch.status().loop("held")
        assert (held.desired_state, held.state) == (DesiredState.STOPPED, LoopState.STOPPED)


@pytest.mark.timeout(60)
def test_a_pause_of_the_loop_s_own_is_not_a_desired_state(tmp_path: Path) -> None:
    """onError: pauseLoop pauses the loop; nobody asked for it: desiredState stays running."""
    journal = str(tmp_path / "journal.log")
    doc = document(journal, "never-set")
    step = doc["spec"]["loops"][0]["nodes"][0]
    del step["config"]["gate"]
    step["config"]["fail_on"] = [2]
    step["onError"] = "pauseLoop"
    with WorkflowOrchestrator(doc) as orch:
        handle = orch.loop("a")
        assert handle.wait_for_state(LoopState.PAUSED, timeout=WAIT)
        own = handle.status()
        assert own.desired_state is DesiredState.RUNNING
        assert "onError: pauseLoop" in (own.reason or "")
        assert orch.status().loop("a").desired_state is DesiredState.RUNNING
