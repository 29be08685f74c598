"""The operator killed (SIGKILL, a real process) in the middle of a reconciliation and started
again converges to the same children: nothing duplicated, the CURVE keys not regenerated."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
import yaml

from hack.k8s._util import start_process, stop_pids, tail, wait_until

from .conftest import Installed
from .support import example

pytestmark = pytest.mark.timeout(240)
REPLICAS = 120  # enough pod creations that a kill lands in the middle of them


@contextmanager
def _operator(installed: Installed, log: Path) -> Iterator[Popen[bytes]]:
    env = {
        **os.environ,
        "KUBECONFIG": str(installed.kubeconfig),
        "OSTINATO_IMAGE": "localhost/ostinato:test",
        "OSTINATO_STATUS_INTERVAL_SECONDS": "1",
        "OSTINATO_HUB_TIMEOUT_SECONDS": "0.2",
        # REPLICAS loop pods are more than the default pod budget allows
        "OSTINATO_MAX_PODS_PER_WORKFLOW": str(REPLICAS + 1),
    }
    argv = [
        sys.executable,
        "-m",
        "ostinato_operator",
        "--all-namespaces",
        "--no-leader-elect",
        "--no-webhook",
        "--metrics-port",
        "0",
        "--liveness-port",
        "0",
    ]
    proc = start_process(argv, log, env)
    try:
        yield proc
    finally:
        stop_pids([proc.pid], grace=10)
        proc.wait(timeout=10)


def _state(installed: Installed, ns: str) -> dict[str, Any]:
    def get(kind: str, name: str) -> dict[str, Any]:
        out = installed.plane.kubectl("get", kind, name, "-n", ns, "-o", "json")
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    pods = json.loads(
        installed.plane.kubectl(
            "get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=loop", "-o", "json"
        ).stdout
    )["items"]
    secret, cm, dep = (
        get("secret", "big-curve"),
        get("configmap", "big-spec"),
        get("deployment", "big-hub"),
    )
    return {
        "pods": sorted(p["metadata"]["name"] for p in pods),
        "secret": (secret["metadata"]["uid"], secret["data"]),
        "configmap": cm["data"],
        "deployment": (dep["metadata"]["uid"], dep["metadata"]["generation"]),
    }


def _pod_count(installed: Installed, ns: str) -> int | None:
    """Loop pods of "big" (the hub's pod carries the workflow label too), None while none."""
    from kubernetes.client import CoreV1Api

    with installed.plane.api_client() as client:
        pods = CoreV1Api(client).list_namespaced_pod(
            ns, label_selector="ostinato.dev/workflow=big,app.kubernetes.io/component=loop"
        )
    return len(pods.items) or None


def test_killed_mid_reconcile_and_restarted_converges(
    installed: Installed, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    doc = example("k8s-counter.yaml")
    doc["metadata"]["name"] = "big"
    doc["spec"]["loops"][1]["replicas"] = REPLICAS
    log = tmp_path / "operator.log"
    with _operator(installed, log) as first:
        installed.plane.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
        wait_until(
            lambda: _pod_count(installed, ns), timeout=60, what="the first loop pods", interval=0.02
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    at_kill = _pod_count(installed, ns) or 0
    assert 0 < at_kill < REPLICAS + 1, f"the kill did not land mid-reconcile ({at_kill} pods)"
    before = {k: v for k, v in _state(installed, ns).items() if k != "pods"}

    with _operator(installed, log):
        seen: list[int | None] = []

        def converged() -> bool | None:
            seen.append(_pod_count(installed, ns))
            return True if seen[-1] == REPLICAS + 1 else None

        try:
            wait_until(converged, timeout=120, what="all pods after the restart", interval=0.5)
        except TimeoutError:
            pytest.fail(f"{seen[-1]} pods after the restart, not {REPLICAS + 1}:\n{tail(log)}")
        after = _state(installed, ns)
    expected = sorted(["big-writer-0", *(f"big-reader-{i}" for i in range(REPLICAS))])
    assert after["pods"] == expected, tail(log)
    assert after["secret"] == before["secret"], "the CURVE keys were regenerated"
    assert after["configmap"] == before["configmap"]
    assert after["deployment"] == before["deployment"], "the hub Deployment was changed"


def test_without_the_webhook_an_invalid_spec_fails_in_status(
    installed: Installed, namespace: str, tmp_path: Path
) -> None:
    """With the webhook off the API server stores what its schema allows; the operator then
    reports the runtime's field-named errors in status and an event, and makes no child."""
    doc = example("k8s-counter.yaml")
    # Within the CRD's schema (a duplicate loop name no longer is: loops are keyed by name).
    doc["spec"]["loops"][1]["producer"]["queue"]["read"] = "nope"
    with _operator(installed, tmp_path / "operator.log"):
        installed.plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

        def failed() -> dict[str, Any] | None:
            out = installed.plane.kubectl(
                "get", "workflow", "counter", "-n", namespace, "-o", "json"
            )
            status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
            return status if status.get("phase") == "Failed" else None

        status = wait_until(failed, timeout=60, what="phase Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert (
        "spec.loops[1].producer.queue.read: queue 'nope' is not declared in spec.queues"
        in ready["message"]
    ), ready["message"]
    events = json.loads(
        installed.plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    )["items"]
    assert any(
        e["reason"] == "InvalidSpec" and "spec.loops[1].producer" in e["message"] for e in events
    )
    children = installed.plane.kubectl(
        "get",
        "configmaps,deployments,pods",
        "-n",
        namespace,
        "-l",
        "ostinato.dev/workflow=counter",
        "-o",
        "name",
    ).stdout
    assert children.strip() == ""
