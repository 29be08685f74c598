"""Autoscaling on the real control plane: `ostinato hub` and a writer `ostinato loop` on loopback
(no CURVE), the operator pointed at the hub. A backlog in the hub makes the operator create the
autoscaled loop's pods (0 -> 3), with ScaledUp events that give the backlog, status.loops[]
.replicas and the operator's metric; a reader process that drains the queue brings it back to
zero pods (ScaledDown). The writer's pod is never touched. The control plane runs no kubelet:
pods are objects only, which is all the operator's part is about."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hack.k8s._util import free_port, start_process, stop_pids, wait_until
from ostinato_operator import _metrics
from ostinato_operator._keys import CONTROL_TOKEN_ENV, new_secret_data

from .conftest import Installed, Operator, run_operator

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]

SECRET = new_secret_data()
BURST = 1500

DOC: dict[str, Any] = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "scaled"},
    "spec": {
        "queues": [{"name": "jobs", "mode": "work", "capacity": 10000}],
        "loops": [
            {
                "name": "writer",
                "producer": {
                    "name": "tick",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 0.001, "count": BURST},
                },
                "nodes": [{"name": "send", "kind": "blocking", "queue": {"write": "jobs"}}],
            },
            {
                "name": "reader",
                "producer": {"name": "jobs", "queue": {"read": "jobs"}},
                "nodes": [
                    {
                        "name": "log",
                        "kind": "blocking",
                        "class": "LogSink",
                        "config": {"every": 500},
                    }
                ],
                "autoscale": {
                    "minReplicas": 0,
                    "maxReplicas": 3,
                    "targetBacklogPerReplica": 100,
                    "scaleUpCooldownSeconds": 0,
                    "scaleDownDelaySeconds": 2,
                    "intervalSeconds": 1,
                },
            },
        ],
    },
}


def _loop_process(path: Path, loop: str, zmq_port: int, log: Path) -> Any:
    exe = [sys.executable, "-m", "ostinato", "loop", str(path), "--loop", loop]
    hub = ["--hub", f"tcp://127.0.0.1:{zmq_port}", "--http-port", "0"]
    return start_process([*exe, *hub, "--insecure", "--http-host", "127.0.0.1"], log)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[int, Path, int]]:
    """The hub and the writer on loopback; yields (HTTP port, document path, ZeroMQ port)."""
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump(DOC))
    zmq_port, http_port = free_port(), free_port()
    args = [sys.executable, "-m", "ostinato", "hub", str(path), "--bind"]
    args += [f"tcp://127.0.0.1:{zmq_port}", "--http-port", str(http_port)]
    args += ["--state-dir", str(tmp_path / "state"), "--insecure", "--http-host", "127.0.0.1"]
    env = {**os.environ, CONTROL_TOKEN_ENV: SECRET[CONTROL_TOKEN_ENV]}
    procs = [start_process(args, tmp_path / "hub.log", env)]
    procs.append(_loop_process(path, "writer", zmq_port, tmp_path / "writer.log"))
    try:
        yield http_port, path, zmq_port
    finally:
        stop_pids([p.pid for p in procs], grace=10)
        for p in procs:
            p.wait(timeout=10)


def _json(op: Operator, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(op.kubectl(*args, "-o", "json").stdout)
    return out


def _reader_pods(op: Operator, ns: str) -> set[str]:
    pods = _json(op, "get", "pods", "-n", ns, "-l", "ostinato.dev/loop=reader")["items"]
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def _reader(op: Operator, ns: str) -> dict[str, Any]:
    status = _json(op, "get", "workflow", "scaled", "-n", ns).get("status", {})
    return next((lp for lp in status.get("loops", []) if lp["name"] == "reader"), {})


def _events(op: Operator, ns: str, reason: str) -> list[str]:
    items = _json(op, "get", "events", "-n", ns)["items"]
    return [e["message"] for e in items if e["reason"] == reason]


def _hub_series(port: int) -> dict[str, float]:
    """The hub's /metrics samples of the reader loop, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("loop") == "reader"
    }


def _metric(name: str, ns: str) -> float | None:
    labels = {"namespace": ns, "workflow": "scaled", "loop": "reader"}
    return _metrics.REGISTRY.get_sample_value(name, labels)


def test_backlog_scales_pods_up_and_back_to_zero(
    installed: Installed, namespace: str, hub: tuple[int, Path, int], tmp_path: Path
) -> None:
    ns = namespace
    http_port, path, zmq_port = hub
    with run_operator(installed, OSTINATO_HUB_URL_TEMPLATE=f"http://127.0.0.1:{http_port}") as op:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "scaled-curve", "namespace": ns},
            "stringData": SECRET,
        }
        op.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(secret))
        op.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(DOC))
        writer = wait_until(
            lambda: (
                _json(op, "get", "pod", "scaled-writer-0", "-n", ns, "--ignore-not-found")
                if op.kubectl("get", "pod", "scaled-writer-0", "-n", ns, check=False).returncode
                == 0
                else None
            ),
            timeout=60,
            what="the writer's pod",
        )
        writer_uid = writer["metadata"]["uid"]

        # Nothing reads the queue: the backlog grows to the burst, the reader gets 3 pods.
        wait_until(
            lambda: _reader_pods(op, ns) == {f"scaled-reader-{i}" for i in range(3)} or None,
            timeout=90,
            what="three reader pods",
        )
        assert wait_until(
            lambda: _reader(op, ns).get("replicas") == 3 or None,
            timeout=30,
            what="status.loops[reader].replicas to say 3",
        )
        ups = _events(op, ns, "ScaledUp")
        assert ups, "no ScaledUp event"
        assert any("loop reader: 0 -> 3 replicas: backlog" in m for m in ups), ups
        assert _metric("ostinato_operator_loop_desired_replicas", ns) == 3
        assert _metric("ostinato_operator_loop_current_replicas", ns) in (None, 0.0, 3.0)

        # A reader on loopback (the pods do not run here) drains the queue: back to zero pods.
        reader = _loop_process(path, "reader", zmq_port, tmp_path / "reader.log")
        try:
            # the hub's /metrics counts the replicas connected to it (the operator decides)
            wait_until(
                lambda: _hub_series(http_port).get("ostinato_loop_current_replicas") == 1 or None,
                timeout=60,
                what="the hub to count the reader connected",
            )
            assert "ostinato_loop_desired_replicas" not in _hub_series(http_port)
            wait_until(
                lambda: not _reader_pods(op, ns) or None,
                timeout=90,
                what="the reader's pods to be deleted",
            )
            assert wait_until(
                lambda: _reader(op, ns).get("replicas") == 0 or None,
                timeout=30,
                what="status.loops[reader].replicas to say 0",
            )
            downs = _events(op, ns, "ScaledDown")
            assert any("loop reader:" in m and "-> 0 replicas" in m for m in downs), downs
            assert _metric("ostinato_operator_loop_desired_replicas", ns) == 0
        finally:
            stop_pids([reader.pid], grace=10)
            reader.wait(timeout=10)
        # scaling one loop touched only that loop's pods
        after = _json(op, "get", "pod", "scaled-writer-0", "-n", ns)
        assert after["metadata"]["uid"] == writer_uid


def test_kubectl_explain_documents_autoscale(installed: Installed) -> None:
    def explain(path: str) -> str | None:
        """The API server publishes a new CRD's schema to OpenAPI a moment after it is made."""
        done = installed.plane.kubectl("explain", path, check=False)
        return done.stdout if done.returncode == 0 else None

    out = wait_until(
        lambda: explain("workflow.spec.loops.autoscale"), timeout=60, what="kubectl explain"
    )
    assert "exclusive with replicas" in out
    for field in (
        "minReplicas",
        "maxReplicas",
        "targetBacklogPerReplica",
        "scaleUpCooldownSeconds",
        "scaleDownDelaySeconds",
        "intervalSeconds",
    ):
        assert field in out, out
    detail = explain("workflow.spec.loops.autoscale.minReplicas")
    assert detail is not None
    assert "scale to none" in detail, detail
