"""A process loop that crashes is reported as error and restarted; other loops keep going."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from ostinato import LoopState

from ..engine.conftest import loop, node, workflow
from ..engine.nodes import read

WAIT = 30.0


def crash_loop(journal: str, marker: str, how: str, count: int | None = None) -> dict[str, Any]:
    return loop(
        "worker",
        "process",
        node("p", "Count", journal=journal, tag="produce", count=count),
        {
            "name": "crash",
            "kind": "blocking",
            "class": "tests.engine.nodes:Crash",
            "config": {"at": 3, "how": how, "marker": marker},
        },
    )


def witness(journal: str) -> dict[str, Any]:
    return loop("witness", "thread", node("p", "Count", journal=journal, tag="witness"))


def test_os_exit_is_reported_and_restarted_while_others_run(
    run: Any, journal: str, tmp_path: Path
) -> None:
    orch = run(
        workflow(crash_loop(journal, str(tmp_path / "crashed"), "exit", count=10), witness(journal))
    )
    worker, other = orch.loop("worker"), orch.loop("witness")
    assert worker.wait_for(lambda s: s.state is LoopState.ERROR, WAIT)
    status = worker.status()
    assert "exited with code 3" in (status.reason or "")
    before = other.status().iterations
    assert worker.wait_for(lambda s: s.restarts == 1 and s.state is LoopState.FINISHED, WAIT)
    assert worker.join(WAIT)
    assert worker.status().iterations == 10  # the new process ran its 10 iterations
    assert other.status().iterations > before
    assert other.state is LoopState.RUNNING


def test_sigkill_from_outside_is_restarted(run: Any, journal: str) -> None:
    orch = run(
        workflow(
            loop("worker", "process", node("p", "Count", journal=journal, tag="produce")),
            witness(journal),
        )
    )
    worker = orch.loop("worker")
    assert worker.wait_for(lambda s: s.state is LoopState.RUNNING and s.iterations > 0, WAIT)
    first_pid = worker.status().pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    assert worker.wait_for(lambda s: s.state is LoopState.ERROR, WAIT)
    assert "killed by SIGKILL" in (worker.status().reason or "")
    assert worker.wait_for(
        lambda s: s.restarts == 1 and s.state is LoopState.RUNNING and s.iterations > 0, WAIT
    )
    assert worker.status().pid not in (None, first_pid)
    assert orch.loop("witness").state is LoopState.RUNNING


def test_exception_in_setup_restarts_with_backoff_until_stopped(run: Any, journal: str) -> None:
    doc = workflow(
        loop(
            "worker",
            "process",
            node("p", "Count", journal=journal, tag="produce"),
            node("x", "BadSetup", "blocking", journal=journal, tag="x"),
            restart={"initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.2},
        ),
        witness(journal),
    )
    orch = run(doc)
    worker = orch.loop("worker")
    assert worker.wait_for(
        lambda s: (
            s.restarts >= 2 and s.state is LoopState.ERROR and "restarting" in (s.reason or "")
        ),
        WAIT,
    )
    status = worker.status()
    assert "cannot open the device" in (status.last_error or "")
    assert "restarting in" in (status.reason or "")
    assert read(journal).count("x setup-failed") >= 3
    assert read(journal).count("produce teardown") >= 3  # set-up nodes torn down each time
    worker.stop()
    assert worker.join(WAIT)
    # It never worked: it ends in error (exit 1 for `ostinato run`), as a thread loop does.
    final = worker.status()
    assert final.state is LoopState.ERROR
    assert (final.reason or "").startswith("stopped while down: the process"), final.reason
    assert "cannot open the device" in (final.last_error or "")
    assert orch.loop("witness").state is LoopState.RUNNING


def test_a_paused_loop_comes_back_paused_after_a_crash(run: Any, journal: str) -> None:
    orch = run(workflow(loop("worker", "process", node("p", "Count", journal=journal, tag="p"))))
    worker = orch.loop("worker")
    assert worker.wait_for(lambda s: s.iterations > 0, WAIT)
    worker.pause()
    assert worker.wait_for_state(LoopState.PAUSED, timeout=WAIT)
    pid = worker.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert worker.wait_for(lambda s: s.restarts == 1 and s.state is LoopState.PAUSED, WAIT)
    assert worker.status().iterations == 0
    worker.resume()
    assert worker.wait_for(lambda s: s.iterations > 0, WAIT)


def test_children_stop_when_the_orchestrator_is_killed(tmp_path: Path, journal: str) -> None:
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from ostinato import WorkflowOrchestrator
        from tests.engine.conftest import loop, node, workflow
        doc = workflow(loop("worker", "process",
                            node("p", "Count", journal={journal!r}, tag="p")))
        orch = WorkflowOrchestrator(doc)
        orch.start()
        worker = orch.loop("worker")
        assert worker.wait_for(lambda s: s.iterations > 0, 30)
        print(worker.status().pid, flush=True)
        import threading; threading.Event().wait(60)
    """)
    )
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        child = int(host.stdout.readline())
        host.kill()
        host.wait(10)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the loop process outlived its orchestrator")
        # It stopped gracefully: its nodes were torn down.
        assert "p teardown" in read(journal)
    finally:
        host.kill()


def test_a_silent_process_loop_is_reported_lost_and_found_again(run: Any, journal: str) -> None:
    orch = run(workflow(loop("worker", "process", node("p", "Count", journal=journal, tag="p"))))
    worker = orch.loop("worker")
    assert worker.wait_for(lambda s: s.state is LoopState.RUNNING and s.iterations > 0, WAIT)
    pid = worker.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # hung: no crash, no heartbeat
    try:
        assert worker.wait_for(lambda s: (s.reason or "").startswith("lost"), WAIT)
        assert worker.status().state is LoopState.ERROR
    finally:
        os.kill(pid, signal.SIGCONT)
    assert worker.wait_for(lambda s: s.state is LoopState.RUNNING, WAIT)
