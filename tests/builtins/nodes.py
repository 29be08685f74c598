"""Recording nodes for the built-in node tests, referenced as ``tests.builtins.nodes:Name``.

Recorders append one JSON line per call to a file named in their config, so the same node works
in the thread, asyncio and process pools (a child process writes the file the test reads).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from pydantic import Field

from ostinato import BlockingNode, NodeConfig, NodeData, NonBlockingNode


class RecorderConfig(NodeConfig):
    path: str = Field(description="JSON-lines file that gets one record per call.")
    slow_call: int | None = Field(None, ge=1, description="Overrun on this call (1-based) ...")
    slow_seconds: float = Field(0.0, ge=0, description="... by blocking this long.")
    sqlite_path: str | None = Field(None, description="Also record the row count of ...")
    sqlite_table: str = Field("ostinato_records", description="... this table of this file.")


class Recorder(BlockingNode[RecorderConfig], NonBlockingNode[RecorderConfig]):
    """Records each call (monotonic time, loop, iteration, payload, trace id); passes data on.

    Setup records its time too: nodes are set up in chain order before the producer's first
    call, so a recorder's setup time is a lower bound of an interval producer's anchor.
    ``time.monotonic`` is system-wide on Linux, so times recorded by a child process compare
    with the parent's.
    """

    def setup(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._file = open(self.config.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in teardown
        self._write({"event": "setup", "t": time.monotonic()})

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def process(self, data: NodeData) -> NodeData:
        record: dict[str, Any] = {
            "event": "call",
            "t": time.monotonic(),
            "loop": data.loop,
            "iteration": data.iteration,
            "payload": data.payload,
            "trace_id": data.trace_id,
        }
        if self.config.sqlite_path is not None:
            table = self.config.sqlite_table
            with closing(sqlite3.connect(self.config.sqlite_path)) as db:
                (rows,) = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            record["rows"] = rows
        self._write(record)
        with self._lock:
            self._calls += 1
            call = self._calls
        if call == self.config.slow_call:
            # The overrun is the workload itself: a bounded block inside the node.
            threading.Event().wait(self.config.slow_seconds)
        return data

    def teardown(self) -> None:
        with self._lock:
            self._file.close()


class Describe(BlockingNode[NodeConfig]):
    """Turns a number into a small structure, so sinks get a payload that needs real JSON."""

    run_inline = True

    def process(self, data: NodeData) -> dict[str, Any]:
        n = int(data.payload)
        return {"n": n, "square": n * n, "tags": ["x", str(n)]}


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The calls a :class:`Recorder` recorded in ``path``, in order (none when it never ran)."""
    return [r for r in _lines(path) if r["event"] == "call"]


def setup_time(path: Path) -> float:
    """When the (one) :class:`Recorder` writing ``path`` was set up, monotonic seconds."""
    (t,) = [r["t"] for r in _lines(path) if r["event"] == "setup"]
    return float(t)
