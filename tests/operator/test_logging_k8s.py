"""The real `ostinato-operator` writes each log record once (it wrote every line twice)."""

from __future__ import annotations

import os
import secrets
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from hack.k8s._util import free_port, start_process, stop_pids, tail, wait_until

from .conftest import OPERATOR_NS, Installed
from .support import example

pytestmark = pytest.mark.timeout(180)


def _up(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return None


def _lines(log: Path, text: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if text in line]


def test_each_message_is_logged_once(installed: Installed, namespace: str, tmp_path: Path) -> None:
    log, liveness = tmp_path / "operator.log", free_port()
    lease = f"logging-{secrets.token_hex(3)}"
    env = {**os.environ, "KUBECONFIG": str(installed.kubeconfig), "OSTINATO_LEASE_NAME": lease}
    argv = [
        sys.executable, "-m", "ostinato_operator", "--all-namespaces", "--no-webhook",
        "--leader-elect", "--lease-namespace", OPERATOR_NS,
        "--metrics-port", "0", "--liveness-port", str(liveness),
    ]  # fmt: skip
    proc = start_process(argv, log, env)
    try:

        def alive() -> None:
            if proc.poll() is not None:
                raise AssertionError(f"the operator exited: {tail(log)}")

        wait_until(
            lambda: _up(f"http://127.0.0.1:{liveness}/healthz"),
            timeout=60,
            what="the operator's liveness",
            check=alive,
        )
        installed.plane.kubectl(
            "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(example("k8s-counter.yaml"))
        )
        handled = "Handler 'workflow_changed' succeeded"  # kopf's, for this one Workflow
        wait_until(
            lambda: True if _lines(log, handled) else None,
            timeout=60,
            what="the operator to handle the Workflow",
            check=alive,
        )
    finally:
        stop_pids([proc.pid], grace=20)
    # ours (before kopf runs) and kopf's (while it runs): each exactly once
    assert len(_lines(log, f"holding lease {OPERATOR_NS}/{lease}")) == 1, tail(log, 40)
    assert len(_lines(log, handled)) == 1, tail(log, 40)
