"""SQLiteWriter: one row per iteration, WAL mode, custom tables, blocking and non-blocking."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ostinato import LoopState, WorkflowError, load_workflow

from .nodes import read_records
from .support import DESCRIBE, PROMPT, node, recorder, running, workflow

POOLS = ["thread", "asyncio", "process"]


def rows(path: Path, table: str = "ostinato_records") -> list[dict[str, Any]]:
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        found = db.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()
    return [dict(r) for r in found]


def journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    return str(mode)


def writer(path: Path, kind: str = "nonBlocking", **config: Any) -> dict[str, Any]:
    return node("store", "SQLiteWriter", kind, path=str(path), **config)


def expected_payload(n: int) -> dict[str, Any]:
    return {"n": n, "square": n * n, "tags": ["x", str(n)]}


@pytest.mark.parametrize("pool", POOLS)
def test_non_blocking_one_row_per_iteration(pool: str, tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    store = {**writer(db), "maxInFlight": 4}
    doc = workflow(
        pool,
        node("count", "CounterProducer", count=40),
        [node("describe", DESCRIBE, "blocking"), store],
        loop="sensor",
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("sensor").status()
    assert status.state is LoopState.FINISHED
    assert status.iterations == 40
    assert status.abandoned == 0
    assert status.node("store").calls == 40
    assert status.node("store").errors == 0
    found = rows(db)
    assert len(found) == 40
    assert sorted(r["iteration"] for r in found) == list(range(1, 41))
    assert {r["loop"] for r in found} == {"sensor"}
    for r in found:
        assert json.loads(r["payload"]) == expected_payload(r["iteration"] - 1)
        assert len(r["trace_id"]) == 16
        assert r["created_at"] <= r["written_at"]
    assert len({r["trace_id"] for r in found}) == 40
    assert journal_mode(db) == "wal"


@pytest.mark.parametrize("pool", POOLS)
def test_stop_drains_pending_writes(pool: str, tmp_path: Path) -> None:
    """Stopped by request mid-run: every iteration's write is in the file afterwards."""
    db = tmp_path / "out.db"
    doc = workflow(
        pool,
        node("tick", "IntervalProducer", periodSeconds=0.002, overrun="catchUp"),
        [{**writer(db), "maxInFlight": 64}],
    )
    with running(doc) as orch:
        assert orch.loop("main").wait_for(lambda s: s.iterations >= 25, PROMPT)
        final = orch.stop(timeout=PROMPT).loop("main")
    assert final.state is LoopState.STOPPED
    assert final.abandoned == 0
    found = rows(db)
    assert len(found) == final.iterations >= 25
    assert sorted(r["iteration"] for r in found) == list(range(1, final.iterations + 1))
    assert sorted(json.loads(r["payload"]) for r in found) == list(range(final.iterations))


@pytest.mark.parametrize("pool", POOLS)
def test_blocking_row_is_written_before_the_next_node(pool: str, tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    out = tmp_path / "rec.jsonl"
    doc = workflow(
        pool,
        node("count", "CounterProducer", start=10, count=15),
        [
            writer(db, "blocking", table="readings"),
            recorder(out, sqlitePath=str(db), sqliteTable="readings"),
        ],
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    assert status.iterations == 15
    records = read_records(out)
    # Data passes through unchanged, and the row of iteration i exists when the next node runs.
    assert [r["payload"] for r in records] == list(range(10, 25))
    assert [r["rows"] for r in records] == list(range(1, 16))
    found = rows(db, "readings")
    assert [r["iteration"] for r in found] == list(range(1, 16))
    assert [json.loads(r["payload"]) for r in found] == list(range(10, 25))


def test_custom_table_leaves_default_table_absent(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    doc = workflow(
        "thread", node("count", "CounterProducer", count=3), [writer(db, table="Sensor_2")]
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
    with closing(sqlite3.connect(db)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "Sensor_2" in tables
    assert "ostinato_records" not in tables
    # Non-blocking writes run on several side-effect threads: rows come in any order.
    assert sorted(r["iteration"] for r in rows(db, "Sensor_2")) == [1, 2, 3]


def test_table_named_like_an_sql_keyword(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    doc = workflow("thread", node("count", "CounterProducer", count=2), [writer(db, table="order")])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    assert status.state is LoopState.FINISHED
    assert len(rows(db, "order")) == 2


def test_appends_to_an_existing_table(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    for _ in range(2):
        doc = workflow("thread", node("count", "CounterProducer", count=3), [writer(db)])
        with running(doc) as orch:
            assert orch.wait(PROMPT)
    assert sorted(r["iteration"] for r in rows(db)) == [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize(
    "table", ["bad-name", "1abc", "x; DROP TABLE y", "", 'a"b', "sqlite_master", "SQLITE_x"]
)
def test_invalid_table_name_is_rejected_at_validation(table: str, tmp_path: Path) -> None:
    doc = workflow(
        "thread", node("count", "CounterProducer"), [writer(tmp_path / "x.db", table=table)]
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow(doc)
    errors = info.value.errors
    assert [e.path for e in errors] == ["spec.loops[0].nodes[0].config.table"]
    assert "table" in errors[0].message
    assert not (tmp_path / "x.db").exists()


def test_missing_path_is_rejected_at_validation() -> None:
    doc = workflow(
        "thread", node("count", "CounterProducer"), [node("store", "SQLiteWriter", "blocking")]
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow(doc)
    assert [e.path for e in info.value.errors] == ["spec.loops[0].nodes[0].config.path"]


def test_unopenable_file_fails_setup_naming_the_path(tmp_path: Path) -> None:
    db = tmp_path / "no-such-dir" / "out.db"
    doc = workflow("thread", node("count", "CounterProducer", count=3), [writer(db)])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    assert status.state is LoopState.ERROR
    assert status.iterations == 0
    assert status.last_error is not None
    assert str(db) in status.last_error
