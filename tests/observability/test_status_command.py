"""`ostinato status --url`: the same table as `ostinato run`, for a workflow running elsewhere."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import TICKING, Running

REPO = Path(__file__).resolve().parents[2]


def status_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ostinato", "status", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_status_prints_every_loop_with_its_state_and_rate(running: Running) -> None:
    result = status_cmd("--url", running.server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"workflow {running.orchestrator.name}"
    header = lines[1].split()
    assert header[:5] == ["LOOP", "POOL", "STATE", "ITERATIONS", "IT/S"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line and line[0].islower()}
    for loop, pool in TICKING.items():
        assert rows[loop][1] == pool
        assert rows[loop][2] in ("running", "paused")
    assert any(line.startswith("QUEUE") for line in lines)


def test_status_json_is_the_servers_status(running: Running) -> None:
    result = status_cmd("--url", running.server.url + "/", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["workflow"] == running.orchestrator.name
    assert {lp["name"] for lp in doc["loops"]} >= set(TICKING)


def test_status_of_nothing_says_so_in_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = status_cmd("--url", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.startswith("ostinato status: cannot read")
    assert len(result.stderr.strip().splitlines()) == 1
