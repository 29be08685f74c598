"""Logs of `ostinato run`: JSON records name their workflow, loop, node and iteration in every
pool, process children's lines come out of the parent, and a failing node's traceback is
logged once, not once per retry (issue 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .conftest import N

POOLS = {"t": "thread", "a": "asyncio", "p": "process"}
ITERATIONS = 20


def workflow(flag: Path) -> str:
    loops = []
    for name, pool in POOLS.items():
        loops.append(
            {
                "name": name,
                "pool": pool,
                "producer": {
                    "name": "tick",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 0.01},
                },
                "nodes": [
                    {
                        "name": "chatty",
                        "kind": "blocking",
                        "class": N + "Chatty",
                        "config": {"shout": pool == "process"},
                    },
                    {
                        "name": "broken",
                        "kind": "blocking",
                        "class": N + "FailWhile",
                        "config": {"flag": str(flag)},
                        "retry": {"maxAttempts": 3, "initialBackoffSeconds": 0.001},
                    },
                ],
            }
        )
    doc = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "logged"},
        "spec": {"loops": loops},
    }
    return json.dumps(doc)  # JSON is YAML


def run(tmp_path: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    flag = tmp_path / "flag"
    flag.touch()  # "broken" fails every call
    path = tmp_path / "wf.yaml"
    path.write_text(workflow(flag))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ostinato",
            "run",
            str(path),
            "--iterations",
            str(ITERATIONS),
            "--log-format",
            fmt,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    proc = run(Path(tmp_path_factory.mktemp("json")), "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""  # not a terminal, JSON logs: nothing but logs, on stderr
    records = []
    for line in proc.stderr.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return records


def test_every_record_has_the_fields_and_loop_records_name_their_loop(
    json_run: list[dict[str, Any]],
) -> None:
    fields = {"ts", "level", "logger", "message", "workflow", "loop", "node", "iteration"}
    for rec in json_run:
        assert fields <= rec.keys(), rec
        assert rec["workflow"] == "logged", rec
        parts = rec["logger"].split(".")
        if parts[:2] == ["ostinato", "loop"]:
            assert rec["loop"] == parts[2], rec
        if parts[:2] == ["ostinato", "node"]:
            assert (rec["loop"], rec["node"]) == (parts[2], parts[3]), rec
    # Every loop, the process one included, logged through its loggers.
    assert {r["loop"] for r in json_run if r["logger"].startswith("ostinato.")} >= set(POOLS)


@pytest.mark.parametrize("loop", sorted(POOLS))
def test_node_records_carry_their_iteration(json_run: list[dict[str, Any]], loop: str) -> None:
    chatty = [r for r in json_run if r["logger"] == f"ostinato.node.{loop}.chatty"]
    said = [int(r["message"].rsplit(" ", 1)[1]) for r in chatty]
    assert said == list(range(1, ITERATIONS + 1))
    assert [r["iteration"] for r in chatty] == said
    assert all(r["replica"] == 0 for r in chatty)


def test_a_process_childs_plain_stderr_is_attributed_to_its_loop(
    json_run: list[dict[str, Any]],
) -> None:
    [plain] = [r for r in json_run if "plain stderr line from p" in r["message"]]
    assert (plain["logger"], plain["loop"], plain["level"]) == ("ostinato.loop.p", "p", "WARNING")


@pytest.mark.parametrize("loop", sorted(POOLS))
def test_a_failing_node_logs_its_traceback_once(json_run: list[dict[str, Any]], loop: str) -> None:
    broken = [r for r in json_run if r["logger"] == f"ostinato.node.{loop}.broken"]
    levels = Counter(r["level"] for r in broken)
    # Each iteration: two failed attempts retried (a warning each, no traceback), then the
    # last one fails: the first time at ERROR with the traceback, later ones at DEBUG only.
    assert levels == {"WARNING": 2 * ITERATIONS, "ERROR": 1}, levels
    [error] = [r for r in broken if r["level"] == "ERROR"]
    assert error["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: failing while" in error["exception"]
    assert error["message"].startswith("failed (onError=skipIteration): RuntimeError: failing")
    assert all(
        "Traceback" not in r["message"] and "exception" not in r
        for r in broken
        if r["level"] == "WARNING"
    )


def test_text_logs_of_a_process_loop_come_out_of_the_parent(tmp_path: Path) -> None:
    proc = run(tmp_path, "text")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert any(" INFO    ostinato.node.p.chatty: processing iteration 20" in ln for ln in lines)
    assert any("ostinato.loop.p: stderr: plain stderr line from p" in ln for ln in lines)
    assert not any(ln.startswith("{") for ln in lines)  # the child's JSON was re-formatted


def test_a_childs_lines_become_records_whatever_they_hold() -> None:
    from ostinato._observe._logs import record_from_child

    line = json.dumps(
        {
            "ts": "2026-01-02T03:04:05.678Z",
            "level": "ERROR",
            "logger": "ostinato.node.p.store",
            "message": "failed",
            "workflow": "w",
            "loop": "p",
            "replica": 2,
            "node": "store",
            "iteration": 7,
            "exception": "Traceback ...",
        }
    )
    rec = record_from_child(line + "\n", "p", 2)
    assert (rec.name, rec.levelname, rec.getMessage()) == (
        "ostinato.node.p.store",
        "ERROR",
        "failed",
    )
    assert (rec.loop, rec.replica, rec.node, rec.iteration) == ("p", 2, "store", 7)  # type: ignore[attr-defined]
    assert rec.exc_text == "Traceback ..."
    assert rec.created == pytest.approx(1767323045.678)
    for odd in ("not json", "[1, 2]", '{"logger": "x"}', "{broken", ""):
        rec = record_from_child(odd, "p", 0)
        assert (rec.name, rec.levelname) == ("ostinato.loop.p", "WARNING"), odd
        assert rec.getMessage() == f"stderr: {odd}"
        assert rec.loop == "p"  # type: ignore[attr-defined]
    # An unknown level is shown, not lost: as a warning.
    rec = record_from_child('{"logger": "ostinato.x", "level": "LOUD", "message": "m"}', "p", 0)
    assert (rec.levelname, rec.getMessage(), rec.loop) == ("WARNING", "m", "p")  # type: ignore[attr-defined]
