"""`kubectl ostinato` on running pods: the tree of a running Workflow, every replica's log with
its origin (and following it), pause and resume with --wait seen through to the replicas, and
the console's port-forward reaching the hub's console page."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ._kube import Kube, fetch, poll
from .conftest import Install

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "k8s-counter.yaml"
WF = "counter"

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def _argv(kube: Kube, ns: str, *args: str) -> list[str]:
    script = Path(sys.executable).with_name("kubectl-ostinato")
    return [str(script), "--kubeconfig", str(kube.kubeconfig), "-n", ns, *args]


def _env(kube: Kube) -> dict[str, str]:
    """The cluster's own kubectl first on the PATH (console runs its port-forward)."""
    return {**os.environ, "PATH": f"{kube.kubectl_bin.parent}:{os.environ.get('PATH', '')}"}


def plugin(
    kube: Kube, ns: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(kube, ns, *args), capture_output=True, text=True, timeout=timeout, check=False,
        env=_env(kube),
    )  # fmt: skip


def _loop(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    got = plugin(kube, ns, "get", WF, "-o", "json")
    assert got.returncode == 0, got.stderr
    status = json.loads(got.stdout).get("status") or {}
    return next((lp for lp in status.get("loops", []) if lp["name"] == name), {})


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of output, read aside so a silent process fails, not hangs."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout} s") from None


def test_the_plugin_on_a_running_workflow(kube: Kube, install: Install) -> None:
    ns = install.workflow_namespace

    def show() -> str:
        return plugin(kube, ns, "get", WF).stdout

    install.apply_ready(EXAMPLE, WF, show)
    try:
        poll(
            lambda: True if _loop(kube, ns, "reader").get("iterations", 0) > 0 else None,
            timeout=180, what="the reader's first iterations", show=show,
        )  # fmt: skip
        tree = plugin(kube, ns, "get", WF).stdout
        assert "loop reader: running, replicas 1/1 ready" in tree, tree
        assert "queue numbers: depth " in tree, tree

        # Every replica's lines, with their origin; the reader's LogSink is node `got`.
        logs = poll(
            lambda: (lambda out: out if "[reader/0 got] " in out else None)(
                plugin(kube, ns, "logs", WF, "--since", "10m").stdout
            ),
            timeout=120, what="the reader's 'got' lines", show=show,
        )  # fmt: skip
        assert "[writer/0 sent] " in logs
        only_got = plugin(kube, ns, "logs", WF, "--node", "got").stdout.splitlines()
        assert only_got
        assert all(line.startswith("[reader/0 got] ") for line in only_got), only_got[:5]

        # -f: lines arrive while the loops run; stopped once one came.
        follow = subprocess.Popen(
            _argv(kube, ns, "logs", WF, "reader", "-f", "--since", "1s"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(kube),
        )  # fmt: skip
        try:
            first = _first_line(follow, timeout=60)
            assert first.startswith("[reader/0 "), first
        finally:
            follow.terminate()
            follow.wait(timeout=30)

        paused = plugin(kube, ns, "pause", WF, "reader", "--wait", "--timeout", "120")
        assert paused.returncode == 0, paused.stderr
        assert _loop(kube, ns, "reader")["state"] == "paused"
        resumed = plugin(kube, ns, "resume", WF, "reader", "--wait", "--timeout", "120")
        assert resumed.returncode == 0, resumed.stderr
        assert _loop(kube, ns, "reader")["state"] == "running"

        wrong = plugin(kube, ns, "pause", WF, "raeder")
        assert (wrong.returncode, wrong.stderr) == (
            1,
            "kubectl ostinato: workflow 'counter' has no loop 'raeder' (its loops: writer, "
            "reader)\n",
        )

        console = subprocess.Popen(
            _argv(kube, ns, "console", WF),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(kube),
        )  # fmt: skip
        try:
            line = _first_line(console, timeout=60)
            assert re.match(r"http://127\.0\.0\.1:\d+/console/ ", line), line
            url = line.split()[0]
            page = poll(lambda: fetch(url), timeout=60, what="the hub's console page")
            assert b"<title>ostinato console</title>" in page
            status = fetch(url.replace("/console/", "/status"))
            assert status is not None
            assert json.loads(status)["workflow"] == WF
        finally:
            console.terminate()
            console.wait(timeout=30)
    finally:
        kube.kubectl("delete", "owf", WF, "-n", ns, "--wait=false", check=False)
