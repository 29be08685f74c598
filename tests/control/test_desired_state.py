"""spec.state and spec.loops[].state in a local run, and POST /control on `ostinato run`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from ostinato import DesiredState, LoopState, WorkflowOrchestrator
from ostinato._observe._http import ObservabilityServer

WAIT = 30.0
TOKEN = "desired-control-token-0123456789"


def workflow(state: str = "running", **loop_states: str) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "desired"},
        "spec": {
            "state": state,
            "loops": [
                {
                    "name": name,
                    "state": loop_states.get(name, "running"),
                    "replicas": 2 if name == "b" else 1,
                    "producer": {
                        "name": "tick",
                        "class": "IntervalProducer",
                        "config": {"periodSeconds": 0.001},
                    },
                }
                for name in ("a", "b", "c")
            ],
        },
    }


def test_combine_takes_the_stricter() -> None:
    r, p, s = DesiredState.RUNNING, DesiredState.PAUSED, DesiredState.STOPPED
    assert DesiredState.combine(r, r) is r
    assert DesiredState.combine(r, p) is p
    assert DesiredState.combine(p, r) is p
    assert DesiredState.combine(p, s) is s
    assert DesiredState.combine(s, r) is s


@pytest.mark.timeout(60)
def test_loops_start_as_the_spec_says_and_follow_set_state() -> None:
    with WorkflowOrchestrator(workflow(a="paused", c="stopped")) as orch:
        for handle in orch.replicas("b"):
            assert handle.wait_for(lambda s: s.iterations >= 5, WAIT)
        a = orch.loop("a")
        assert a.wait_for_state(LoopState.PAUSED, timeout=WAIT)
        assert a.status().iterations == 0  # paused before its first iteration
        c = {lp.name: lp for lp in orch.status().loops}["c"]
        assert c.state is LoopState.STOPPED
        assert "desired state is stopped" in (c.reason or "")
        assert "c" not in orch.loops  # never started

        desired = orch.set_state("c", DesiredState.RUNNING)  # a held loop starts now
        assert desired["c"] == "running"
        assert orch.loop("c").wait_for(lambda s: s.iterations >= 5, WAIT)
        orch.set_state("a", DesiredState.RUNNING)
        assert a.wait_for(lambda s: s.iterations >= 5, WAIT)

        orch.set_state(None, DesiredState.PAUSED)
        for handle in orch.loops.values():
            assert handle.wait_for_state(LoopState.PAUSED, timeout=WAIT)
        orch.set_state("b", DesiredState.STOPPED)
        for handle in orch.replicas("b"):
            assert handle.join(WAIT)
            assert handle.state is LoopState.STOPPED
        with pytest.raises(KeyError, match="no loop 'zz'"):
            orch.set_state("zz", DesiredState.RUNNING)


@pytest.mark.timeout(60)
def test_workflow_state_stopped_holds_every_loop_and_paused_pauses_all() -> None:
    with WorkflowOrchestrator(workflow("stopped")) as orch:
        assert orch.loops == {}
        assert {lp.state for lp in orch.status().loops} == {LoopState.STOPPED}
        assert len(orch.status().loops) == 4  # replicas included
    with WorkflowOrchestrator(workflow("paused", a="stopped")) as orch:
        assert set(orch.loops) == {"b", "b-1", "c"}
        for handle in orch.loops.values():
            assert handle.wait_for_state(LoopState.PAUSED, timeout=WAIT)


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.timeout(60)
def test_post_control_on_a_local_run() -> None:
    with (
        WorkflowOrchestrator(workflow()) as orch,
        ObservabilityServer(orch, port=0, control_token=TOKEN) as server,
    ):
        code, reply = _post(server.url + "/control", {"loop": "a", "state": "paused"})
        assert code == 200
        assert orch.loop("a").wait_for_state(LoopState.PAUSED, timeout=WAIT)
        assert reply["loops"]["b"] == "running"
        code, reply = _post(server.url + "/control", {"loop": "a", "state": "sleeping"})
        assert code == 400
        assert reply["error"].startswith("state:")
        assert orch.loop("a").state is LoopState.PAUSED  # nothing applied
