"""The live view of `ostinato run`: redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from ostinato import LoopState, LoopStatus, NodeHealth, NodeStatus, WorkflowStatus
from ostinato._model._status import QueueStatus
from ostinato._observe._live import render, wants_live_view

WORKFLOW = """\
apiVersion: ostinato.dev/v1alpha1
kind: Workflow
metadata: {name: watched}
spec:
  loops:
    - name: beat
      pool: thread
      producer: {name: tick, class: IntervalProducer, config: {periodSeconds: 0.02}}
      nodes:
        - {name: flaky, kind: blocking, class: "tests.observability.nodes:FailEvery",
           config: {every: 2}}
"""
REPO = Path(__file__).resolve().parents[2]
REDRAW = re.compile(r"\x1b\[(\d+)F\x1b\[J")


def test_render_shows_state_rate_failing_nodes_and_queues() -> None:
    status = WorkflowStatus(
        workflow="w",
        loops=[
            LoopStatus(
                name="a",
                pool="thread",
                state=LoopState.RUNNING,
                iterations=120,
                nodes=[
                    NodeStatus(name="src", kind="producer"),
                    NodeStatus(
                        name="bad",
                        kind="blocking",
                        health=NodeHealth.FAILING,
                        errors=7,
                        last_error="ValueError: nope\nsecond line",
                    ),
                ],
            ),
            LoopStatus(name="a", replica=1, pool="thread", state=LoopState.PAUSED, reason="why"),
        ],
        queues=[QueueStatus(name="q", depth=42, enqueued=50, delivered=8)],
    )
    lines = render(status, {("a", 0): 49.96, ("a", 1): None}, elapsed=12.3, colour=False)
    text = "\n".join(lines)
    assert lines[0] == "workflow w: 2 loop(s), up 12s"
    assert re.search(r"^a +thread +running +50\.0 +120 +0\s*$", text, re.M), text
    assert re.search(r"^a-1 +thread +paused +- +0 +0 +why$", text, re.M), text
    assert re.search(r"^a/bad +failing +7 +ValueError: nope$", text, re.M), text
    assert "src" not in text  # healthy nodes are not listed
    assert re.search(r"^q +42 +50 +8 +0 +0$", text, re.M), text
    assert "\x1b[" not in text
    coloured = render(status, {}, elapsed=0)
    assert "\x1b[32mrunning" in "\n".join(coloured)


def test_live_view_only_on_a_terminal(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as f:
        assert not wants_live_view("auto", f)
        assert wants_live_view("always", f)
        assert not wants_live_view("never", sys.stdout)


def read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out.decode(errors="replace")


def test_on_a_terminal_the_table_is_redrawn_and_logs_print_above_it(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ostinato", "run", str(path), "--duration", "3"],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=REPO,
    )
    os.close(follower)
    try:
        text = read_all(leader, proc, timeout=60)
        assert proc.wait(timeout=30) == 0, text[-3000:]
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    redraws = REDRAW.findall(text)
    assert len(redraws) >= 2, text[-3000:]  # once a second, and the final one
    # Each redraw erases exactly the lines the previous drawing took.
    frames = REDRAW.split(text)
    for height, frame_after in zip(redraws, frames[2::2], strict=False):
        assert int(height) > 0
        assert frame_after  # something was drawn again
    last = text[text.rfind("\x1b[J") :]
    assert "workflow watched: 1 loop(s)" in last
    assert re.search(r"beat +thread +stopped +\d+\.\d", last), last  # with its rate
    assert re.search(r"beat/flaky +(failing|healthy)", text)  # FailEvery 2: fails every other
    # The log lines of the run were printed above a table, never inside one (after the last
    # drawing, the view has closed and the final lines follow the table).
    assert "duration of 3s reached: stopping" in text
    for frame in frames[:-1:2]:
        table_start = frame.find("workflow watched:")
        if table_start >= 0:
            table = frame[table_start:]
            assert " INFO " not in table.split("\n\n")[0], table


def test_not_a_terminal_prints_plain_tables(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    proc = subprocess.run(
        [sys.executable, "-m", "ostinato", "run", str(path), "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout + proc.stderr
    assert re.search(r"^beat +thread +stopped", proc.stdout, re.M), proc.stdout
