"""Status from a real hub: `ostinato hub` and two `ostinato loop` processes on loopback (no CURVE),
the operator pointed at the hub's HTTP port; `kubectl wait --for=condition=Ready` works, and a
pause set with `kubectl patch` reaches the loop through POST /control and shows in status.

The hub takes the control token from its environment, as in a pod; the workflow's Secret, made
here beforehand (the operator keeps a Secret it finds), holds the same one, which the operator
reads and sends."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.k8s._util import free_port, start_process, stop_pids, tail, wait_until
from ostinato import WorkflowStatus
from ostinato_operator._keys import CONTROL_TOKEN_ENV, new_secret_data

from .conftest import Installed, Operator, run_operator

pytestmark = pytest.mark.timeout(180)

SECRET = new_secret_data()

DOC: dict[str, Any] = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "relay"},
    "spec": {
        "queues": [{"name": "numbers", "mode": "work", "capacity": 10000}],
        "loops": [
            {
                "name": "writer",
                "producer": {
                    "name": "tick",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 0.02},
                },
                "nodes": [{"name": "send", "kind": "blocking", "queue": {"write": "numbers"}}],
            },
            {
                "name": "reader",
                "pool": "asyncio",
                "producer": {"name": "numbers", "queue": {"read": "numbers"}},
                "nodes": [
                    {
                        "name": "log",
                        "kind": "blocking",
                        "class": "LogSink",
                        "config": {"every": 1000},
                    }
                ],
            },
        ],
    },
}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[int]:
    """The workflow running on loopback; yields the hub's HTTP port."""
    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump(DOC))
    zmq_port, http_port = free_port(), free_port()
    exe = [sys.executable, "-m", "ostinato"]
    common = ["--insecure", "--http-host", "127.0.0.1"]
    hub_env = {**os.environ, CONTROL_TOKEN_ENV: SECRET[CONTROL_TOKEN_ENV]}
    procs = [
        start_process(
            [
                *exe,
                "hub",
                str(path),
                "--bind",
                f"tcp://127.0.0.1:{zmq_port}",
                "--http-port",
                str(http_port),
                "--state-dir",
                str(tmp_path / "state"),
                *common,
            ],
            tmp_path / "hub.log",
            hub_env,
        )
    ]
    for loop in ("writer", "reader"):
        procs.append(
            start_process(
                [
                    *exe,
                    "loop",
                    str(path),
                    "--loop",
                    loop,
                    "--hub",
                    f"tcp://127.0.0.1:{zmq_port}",
                    "--http-port",
                    "0",
                    *common,
                ],
                tmp_path / f"{loop}.log",
            )
        )
    try:
        yield http_port
    finally:
        stop_pids([p.pid for p in procs], grace=10)
        for p in procs:
            p.wait(timeout=10)


def _apply(op: Operator, ns: str) -> None:
    """The workflow, its Secret first: the hub already runs with that Secret's token."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "relay-curve", "namespace": ns},
        "stringData": SECRET,
    }
    op.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(secret))
    op.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(DOC))


def _status(op: Operator, ns: str) -> dict[str, Any]:
    out = op.kubectl("get", "workflow", "relay", "-n", ns, "-o", "json")
    status: dict[str, Any] = json.loads(out.stdout).get("status", {})
    return status


def _loop(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(lp for lp in status.get("loops", []) if lp["name"] == name)
    return found


def test_status_and_pause_through_a_real_hub(
    installed: Installed, namespace: str, hub: int, tmp_path: Path
) -> None:
    ns = namespace
    template = f"http://127.0.0.1:{hub}"
    with run_operator(installed, OSTINATO_HUB_URL_TEMPLATE=template) as op:
        _apply(op, ns)
        waited = op.kubectl(
            "wait",
            "--for=condition=Ready",
            "workflow/relay",
            "-n",
            ns,
            "--timeout=60s",
            check=False,
        )
        assert waited.returncode == 0, (waited.stderr, tail(tmp_path / "hub.log"))
        status = _status(op, ns)
        assert status["phase"] == "Running"
        assert status["ready"] == "2/2"
        assert status["hubUrl"] == template
        first = _loop(status, "reader")["iterations"]
        rising = wait_until(
            lambda: (
                ((s := _status(op, ns)) and _loop(s, "reader")["iterations"] > first and s) or None
            ),
            timeout=30,
            what="the reader's iterations to rise",
        )
        assert any(q["name"] == "numbers" for q in rising["queues"])
        # The operator's own rate, from two of its reads: about the writer's 50 a second.
        rate = wait_until(
            lambda: _loop(_status(op, ns), "writer").get("iterationsPerSecond") or None,
            timeout=30,
            what="the writer's iterations per second",
        )
        assert 5 < rate < 200, rate
        assert any(n["loop"] == "reader" and n["name"] == "log" for n in rising["nodes"])

        patch = json.dumps([{"op": "add", "path": "/spec/loops/1/state", "value": "paused"}])
        op.kubectl("patch", "workflow", "relay", "-n", ns, "--type=json", "-p", patch)
        paused = wait_until(
            lambda: (
                ((s := _status(op, ns)) and _loop(s, "reader")["state"] == "paused" and s) or None
            ),
            timeout=30,
            what="the reader to report paused",
        )
        reader = _loop(paused, "reader")
        assert reader["desiredState"] == "paused"
        assert reader["stateSince"]
        depth = wait_until(
            lambda: ((d := next(q["depth"] for q in _status(op, ns)["queues"])) > 5 and d) or None,
            timeout=30,
            what="messages to wait in the queue while the reader is paused",
        )
        assert depth > 5
        events = json.loads(op.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        assert any(e["reason"] == "Paused" and "reader" in e["message"] for e in events)
        wide = op.kubectl("get", "owf", "relay", "-n", ns, "-o", "wide").stdout
        assert "Running" in wide

        patch = json.dumps([{"op": "replace", "path": "/spec/loops/1/state", "value": "running"}])
        op.kubectl("patch", "workflow", "relay", "-n", ns, "--type=json", "-p", patch)
        wait_until(
            lambda: True if _loop(_status(op, ns), "reader")["state"] == "running" else None,
            timeout=30,
            what="the reader to run again",
        )


def _hub_loop_state(port: int, loop: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as reply:
            status = WorkflowStatus.model_validate_json(reply.read())
    except OSError:
        return None
    return status.loop(loop).state.value


def test_a_pause_reaches_the_hub_without_waiting_for_a_status_round(
    installed: Installed, namespace: str, hub: int, tmp_path: Path
) -> None:
    """The update handler posts a changed state at once: with a 60 s status interval (its first
    round runs before the Workflow exists) the pause still takes effect within seconds."""
    ns = namespace
    with run_operator(
        installed,
        OSTINATO_HUB_URL_TEMPLATE=f"http://127.0.0.1:{hub}",
        OSTINATO_STATUS_INTERVAL_SECONDS="60",
    ) as op:
        _apply(op, ns)
        wait_until(
            lambda: True if _hub_loop_state(hub, "reader") == "running" else None,
            timeout=60,
            what="the reader to run",
        )
        # The handler made the children: the pause below is an update, not part of the create.
        wait_until(
            lambda: _status(op, ns).get("observedGeneration") or None,
            timeout=30,
            what="the operator to take in the Workflow",
        )
        patch = json.dumps([{"op": "add", "path": "/spec/loops/1/state", "value": "paused"}])
        start = time.monotonic()
        op.kubectl("patch", "workflow", "relay", "-n", ns, "--type=json", "-p", patch)
        # A third of the interval: generous for a post (well under a second here), and no round
        # can have posted it (the next is 60 s after the operator started).
        wait_until(
            lambda: True if _hub_loop_state(hub, "reader") == "paused" else None,
            timeout=20,
            what="the hub to report the reader paused",
        )
        assert time.monotonic() - start < 20
        assert _hub_loop_state(hub, "writer") == "running"
