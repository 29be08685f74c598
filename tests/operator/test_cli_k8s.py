"""The real `ostinato-operator` command under the chart's ServiceAccount: metrics, liveness, and
one active replica through the Lease (a second one waits, alive, and takes over when the first
stops)."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path
from subprocess import Popen

import pytest
import yaml

from hack.k8s._util import free_port, start_process, stop_pids, tail, wait_until

from .conftest import OPERATOR_NS, Installed
from .support import example

pytestmark = pytest.mark.timeout(180)


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text: str = resp.read().decode()
            return text
    except OSError:
        return None


def _start(installed: Installed, log: Path, metrics: int, liveness: int) -> Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": str(installed.kubeconfig),
        "OSTINATO_LEASE_RENEW_SECONDS": "1",
        "OSTINATO_HUB_TIMEOUT_SECONDS": "0.2",
    }
    argv = [
        sys.executable,
        "-m",
        "ostinato_operator",
        "--all-namespaces",
        "--leader-elect",
        "--lease-namespace",
        OPERATOR_NS,
        "--no-webhook",
        "--status-interval",
        "1",
        "--metrics-port",
        str(metrics),
        "--liveness-port",
        str(liveness),
    ]
    return start_process(argv, log, env)


def test_one_active_replica_metrics_and_liveness(
    installed: Installed, namespace: str, tmp_path: Path
) -> None:
    m1, l1, m2, l2 = free_port(), free_port(), free_port(), free_port()
    first = _start(installed, tmp_path / "first.log", m1, l1)
    second: Popen[bytes] | None = None
    try:
        wait_until(
            lambda: _fetch(f"http://127.0.0.1:{l1}/healthz"),
            timeout=60,
            what="the first operator's liveness",
            check=lambda: _alive(first, tmp_path),
        )
        installed.plane.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=yaml.safe_dump(example("k8s-counter.yaml")),
        )
        created = 'ostinato_operator_reconcile_duration_seconds_count{trigger="create"}'

        def scraped() -> str | None:
            text = _fetch(f"http://127.0.0.1:{m1}/metrics")
            return text if text and _managed(text) >= 1 and created in text else None

        metrics = wait_until(scraped, timeout=60, what="metrics of the Workflow's creation")
        assert 'ostinato_operator_reconciles_total{trigger="create"}' in metrics
        assert "ostinato_operator_reconcile_duration_seconds_bucket" in metrics

        second = _start(installed, tmp_path / "second.log", m2, l2)
        wait_until(
            lambda: True if "holds lease" in (tmp_path / "second.log").read_text() else None,
            timeout=30,
            what="the second operator to wait for the lease",
        )
        # Not running kopf, but alive for the kubelet: a standby, naming the Lease's holder.
        standby = _fetch(f"http://127.0.0.1:{l2}/healthz")
        assert standby is not None
        assert standby.startswith("standby: waiting for lease"), standby

        stop_pids([first.pid], grace=20)
        first.wait(timeout=10)
        wait_until(
            lambda: _active(f"http://127.0.0.1:{l2}/healthz"),
            timeout=60,
            what="the second operator to take over",
        )

        holder = yaml.safe_load(
            installed.plane.kubectl(
                "get", "lease", "ostinato-operator", "-n", OPERATOR_NS, "-o", "yaml"
            ).stdout
        )["spec"]["holderIdentity"]
        assert holder
        assert "holding lease" in (tmp_path / "second.log").read_text()
    finally:
        stop_pids([p.pid for p in (first, second) if p is not None], grace=20)


def _active(url: str) -> bool | None:
    """kopf's own /healthz answers there (not the standby's)."""
    text = _fetch(url)
    return True if text is not None and not text.startswith("standby") else None


def _managed(text: str) -> float:
    found = re.search(r"^ostinato_operator_managed_workflows (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def _alive(proc: Popen[bytes], tmp_path: Path) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"the operator exited: {tail(tmp_path / 'first.log')}")
