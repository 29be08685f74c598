"""`ostinato hub` and `ostinato loop` over HTTP: the whole workflow's status and its control.

Real processes, real tcp sockets, real HTTP: what the operator relies on in pods.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0

WORKFLOW = textwrap.dedent("""
    apiVersion: ostinato.dev/v1alpha1
    kind: Workflow
    metadata: {name: dist}
    spec:
      queues:
        - {name: nums, mode: work, capacity: 50}
      loops:
        - name: gen
          producer: {name: tick, class: IntervalProducer, config: {periodSeconds: 0.005}}
          nodes:
            - {name: put, kind: blocking, queue: {write: nums}}
        - name: sink
          state: paused
          heartbeatSeconds: 0.2
          producer: {name: nums, queue: {read: nums}}
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(url: str, body: bytes, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Processes:
    """One hub and its loops, each an `ostinato` process on loopback."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "wf.yaml"
        self.file.write_text(WORKFLOW)
        self.token_file = folder / "control.token"
        self.zmq = free_port()
        self.http = free_port()
        self.procs: list[subprocess.Popen[str]] = []
        self.loop_ports: dict[str, int] = {}

    def _start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ostinato", *args, "--insecure", "--http-host", "127.0.0.1"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def hub(self) -> None:
        proc = self._start(
            "hub", str(self.file), "--bind", f"tcp://127.0.0.1:{self.zmq}", "--http-port",
            str(self.http), "--control-token-file", str(self.token_file),
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("hub listening on")
        serving = proc.stdout.readline()
        assert serving.startswith("hub serving HTTP on"), serving
        # The token file did not exist: the hub wrote a new token there, and says where.
        assert f"(control token: {self.token_file} (new))" in serving
        self.token = self.token_file.read_text().strip()

    def loop(self, name: str) -> subprocess.Popen[str]:
        port = self.loop_ports[name] = free_port()
        return self._start(
            "loop", str(self.file), "--loop", name, "--hub", f"tcp://127.0.0.1:{self.zmq}",
            "--http-port", str(port),
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def control(self, body: bytes) -> tuple[int, Any]:
        """POST /control to the hub, with its control token."""
        return post(self.url + "/control", body, self.token)

    def loops(self) -> dict[str, dict[str, Any]]:
        _, doc = get(self.url + "/status")
        return {lp["name"]: lp for lp in doc["loops"]}

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    c = Processes(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_hub_status_control_and_loss(processes: Processes) -> None:
    processes.hub()
    # Before any loop connects, every declared replica is listed as pending.
    status, doc = get(processes.url + "/status")
    assert status == 200
    assert {(lp["name"], lp["state"]) for lp in doc["loops"]} == {
        ("gen", "pending"),
        ("sink", "pending"),
    }
    assert get(processes.url + "/readyz")[0] == 200  # the hub serves: ready
    processes.loop("gen")
    sink = processes.loop("sink")

    # spec.loops[sink].state is paused: the reader never runs, the writer fills the queue
    # (capacity 50, onFull block) and waits, and the hub reports both from their heartbeats.
    until(lambda: processes.loops()["sink"]["state"] == "paused", "sink paused")
    until(lambda: get(processes.url + "/status")[1]["queues"][0]["depth"] >= 50, "a full queue")
    assert processes.loops()["sink"]["iterations"] == 0
    loop_url = f"http://127.0.0.1:{processes.loop_ports['sink']}"
    until(lambda: get(loop_url + "/readyz")[0] == 200, "the sink loop ready")
    assert get(loop_url + "/status")[1]["loops"][0]["name"] == "sink"

    # Resume through the hub: the reader drains the queue.
    code, reply = processes.control(b'{"loop": "sink", "state": "running"}')
    assert (code, reply["loops"]) == (200, {"gen": "running", "sink": "running"})
    until(lambda: processes.loops()["sink"]["iterations"] > 100, "the sink reading")

    # Pause every loop at once, then resume them.
    assert processes.control(b'{"state": "paused"}')[0] == 200
    until(
        lambda: {lp["state"] for lp in processes.loops().values()} == {"paused"}, "all loops paused"
    )
    assert processes.control(b'{"loop": null, "state": "running"}')[0] == 200
    until(lambda: {lp["state"] for lp in processes.loops().values()} == {"running"}, "all running")

    # A loop killed without a word is reported lost after three of its heartbeats (2 s min).
    os.kill(sink.pid, signal.SIGKILL)
    sink.wait(WAIT)
    lost = until(
        lambda: "lost" in (processes.loops()["sink"]["reason"] or "") and processes.loops()["sink"],
        "the killed loop reported lost",
    )
    assert lost["state"] == "error"

    # Stop through the hub: the loop drains and its process exits by itself with 0.
    gen = processes.procs[1]
    assert processes.control(b'{"loop": "gen", "state": "stopped"}')[0] == 200
    assert gen.wait(WAIT) == 0
    until(lambda: processes.loops()["gen"]["state"] == "stopped", "gen reported stopped")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        (b'{"loop": "nope", "state": "paused"}', 404, "nope"),
        (b'{"loop": "gen", "state": "walking"}', 400, "state"),
        (b'{"loop": "gen"}', 400, "state"),
        (b'{"loop": "gen", "state": "paused", "extra": 1}', 400, "extra"),
        (b"not json", 400, "body"),
    ],
)
def test_bad_control_requests_are_refused_naming_the_field(
    processes: Processes, body: bytes, code: int, names: str
) -> None:
    processes.hub()
    got, reply = processes.control(body)
    assert got == code
    assert names in reply["error"]
    # Nothing was applied: every loop still wants what the spec says.
    ok, doc = processes.control(b'{"loop": "sink", "state": "paused"}')
    assert (ok, doc["loops"]) == (200, {"gen": "running", "sink": "paused"})


@pytest.mark.timeout(120)
def test_a_restarted_loop_that_the_hub_paused_runs_not_one_iteration(processes: Processes) -> None:
    """Paused through the hub's POST /control (not the spec), killed and started again, a
    remote loop ran one iteration before the pause reached it (3 of 3 tries in the report)."""
    processes.hub()
    gen = processes.loop("gen")
    processes.loop("sink")  # its reader, resumed, so the writer never waits on a full queue
    until(lambda: processes.loops()["sink"]["state"] == "paused", "sink connected, paused")
    assert processes.control(b'{"loop": "sink", "state": "running"}')[0] == 200
    until(lambda: processes.loops()["gen"]["iterations"] > 10, "gen iterating")
    assert processes.control(b'{"loop": "gen", "state": "paused"}')[0] == 200
    before = until(
        lambda: (lp := processes.loops()["gen"])["state"] == "paused" and lp, "gen paused"
    )["iterations"]
    os.kill(gen.pid, signal.SIGKILL)
    gen.wait(WAIT)
    processes.loop("gen")
    # The new process's reports replace the old one's: wait for its first paused report.
    again = until(
        lambda: (
            (lp := processes.loops()["gen"])["state"] == "paused"
            and lp["iterations"] < before
            and lp
        ),
        "the restarted gen reported paused",
    )
    assert again["iterations"] == 0, again
    # And it does run once the hub says so.
    assert processes.control(b'{"loop": "gen", "state": "running"}')[0] == 200
    until(lambda: processes.loops()["gen"]["iterations"] > 0, "the restarted gen resumed")


@pytest.mark.timeout(120)
def test_the_final_state_file_says_finished_only_for_a_loop_that_ended_by_itself(
    processes: Processes, tmp_path: Path
) -> None:
    """On Kubernetes it is the termination log: only a pod whose loop finished is kept."""
    processes.hub()
    processes.loop("sink")
    assert processes.control(b'{"loop": "sink", "state": "running"}')[0] == 200
    ended = tmp_path / "finished"
    done = processes._start(
        "loop", str(processes.file), "--loop", "gen", "--hub", f"tcp://127.0.0.1:{processes.zmq}",
        "--iterations", "5", "--final-state-file", str(ended),
    )  # fmt: skip
    assert done.wait(WAIT) == 0
    assert ended.read_text().startswith("finished: reached its limit of 5 iteration(s)")
    stopped = tmp_path / "stopped"
    running = processes._start(
        "loop", str(processes.file), "--loop", "gen", "--hub", f"tcp://127.0.0.1:{processes.zmq}",
        "--final-state-file", str(stopped),
    )  # fmt: skip
    until(lambda: processes.loops()["gen"]["state"] == "running", "gen running again")
    running.send_signal(signal.SIGTERM)
    assert running.wait(WAIT) == 0
    assert stopped.read_text().startswith("stopped: ")
