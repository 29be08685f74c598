"""/status follows pause, resume, a failing node and a killed process loop within two
heartbeat intervals, in every pool (issue 4)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ostinato import WorkflowOrchestrator
from ostinato._hosting._process import ProcessLoop
from ostinato._observe._http import ObservabilityServer

from .conftest import PERIOD, N, get, wait_until

#: Heartbeat of every loop, seconds; what /status must keep up with is twice that.
HEARTBEAT = 0.25
DEADLINE = 2 * HEARTBEAT
POOLS = {"t": "thread", "a": "asyncio", "p": "process"}


def document(flags: Path) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "timing"},
        "spec": {
            "loops": [
                {
                    "name": name,
                    "pool": pool,
                    "heartbeatSeconds": HEARTBEAT,
                    "restart": {"initialBackoffSeconds": 0.5},
                    "producer": {
                        "name": "tick",
                        "class": "IntervalProducer",
                        "config": {"periodSeconds": PERIOD},
                    },
                    "nodes": [
                        {
                            "name": "switch",
                            "kind": "blocking",
                            "class": N + "FailWhile",
                            "config": {"flag": str(flags / name)},
                        }
                    ],
                }
                for name, pool in POOLS.items()
            ]
        },
    }


class Env:
    def __init__(self, orchestrator: WorkflowOrchestrator, url: str, flags: Path) -> None:
        self.orchestrator = orchestrator
        self.url = url
        self.flags = flags

    def loop(self, name: str) -> dict[str, Any]:
        loops = get(self.url + "/status").json()["loops"]
        [entry] = [lp for lp in loops if lp["name"] == name]
        return entry  # type: ignore[no-any-return]

    def seen_within(self, check: Callable[[dict[str, Any]], bool], name: str) -> float:
        """Poll /status until ``check(loop entry)``; the seconds it took (fails past 10 s)."""
        start = time.monotonic()
        last: dict[str, Any] = {}

        def seen() -> bool:
            nonlocal last
            last = self.loop(name)
            return check(last)

        assert wait_until(seen, timeout=10, every=0.01), last
        return time.monotonic() - start


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    flags = Path(tmp_path_factory.mktemp("flags"))
    orchestrator = WorkflowOrchestrator(document(flags))
    server = ObservabilityServer(orchestrator, port=0).start()
    try:
        orchestrator.start()
        assert wait_until(lambda: get(server.url + "/readyz").code == 200, timeout=30)
        yield Env(orchestrator, server.url, flags)
    finally:
        orchestrator.stop(timeout=20)
        server.close()


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pause_and_resume(env: Env, name: str) -> None:
    env.orchestrator.pause(name)
    try:
        took = env.seen_within(lambda lp: lp["state"] == "paused", name)
        assert took <= DEADLINE, f"{POOLS[name]}: paused shown after {took:.3f}s"
        stood = env.loop(name)["iterations"]
    finally:
        env.orchestrator.resume(name)
    took = env.seen_within(lambda lp: lp["state"] == "running" and lp["iterations"] > stood, name)
    assert took <= DEADLINE, f"{POOLS[name]}: running again shown after {took:.3f}s"


@pytest.mark.parametrize("name", sorted(POOLS))
def test_a_failing_node(env: Env, name: str) -> None:
    flag = env.flags / name
    flag.touch()
    try:
        took = env.seen_within(
            lambda lp: (
                lp["nodes"][1]["health"] == "failing"
                and "failing while" in (lp["nodes"][1]["lastError"] or "")
            ),
            name,
        )
        # The node fails at its next call (one tick away), then the status must show it.
        assert took <= DEADLINE + PERIOD, f"{POOLS[name]}: failing shown after {took:.3f}s"
        assert "failing while" in (env.loop(name)["lastError"] or "")
    finally:
        flag.unlink()
    took = env.seen_within(lambda lp: lp["nodes"][1]["health"] == "healthy", name)
    assert took <= DEADLINE + PERIOD, f"{POOLS[name]}: healthy again after {took:.3f}s"


@pytest.mark.timeout(90)
def test_a_killed_process_loop(env: Env) -> None:
    handle = env.orchestrator.loop("p")
    assert isinstance(handle, ProcessLoop)
    pid = env.loop("p")["pid"]
    assert pid is not None
    handle.kill()
    took = env.seen_within(lambda lp: lp["state"] == "error", "p")
    assert took <= DEADLINE, f"killed process shown after {took:.3f}s"
    entry = env.loop("p")
    assert "killed by SIGKILL" in (entry["reason"] or ""), entry
    # It is restarted (after 0.5 s) and shown running in a new process.
    env.seen_within(lambda lp: lp["state"] == "running" and lp["pid"] not in (None, pid), "p")
    assert env.loop("p")["restarts"] == 1
