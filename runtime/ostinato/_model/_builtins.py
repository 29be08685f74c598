"""Built-in nodes people can run without writing code: timers, counters, a log sink, SQLite."""

from __future__ import annotations

import itertools
import json
import logging
import re
import sqlite3
import string
import threading
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from ._nodes import (
    BlockingNode,
    NodeConfig,
    NodeData,
    NonBlockingNode,
    ProducerExhausted,
    ProducerNode,
)

__all__ = ["CounterProducer", "IntervalProducer", "LogSink", "SQLiteWriter"]


class IntervalConfig(NodeConfig):
    period_seconds: float = Field(gt=0, description="Time between ticks, seconds.")
    overrun: Literal["skip", "catchUp"] = Field(
        "skip",
        description="When an iteration overruns its tick: 'skip' drops the missed ticks (and "
        "counts them) so the schedule stays on its grid; 'catchUp' runs them back to back.",
    )
    count: int | None = Field(
        None,
        ge=1,
        description="Ticks in the schedule, skipped ones included (tick numbers 0 to count-1); "
        "unset: never ends.",
    )


class IntervalProducer(ProducerNode[IntervalConfig]):
    """Fixed-rate ticks on a grid anchored at the first call; payload is the tick number.

    Tick ``k`` is due ``k`` periods after the anchor. When the loop overran so that later ticks
    are due too, ``skip`` produces only the latest due tick and counts the others in the node's
    ``missedTicks`` counter; ``catchUp`` produces every one, back to back. A tick produced after
    it was due is counted in ``lateTicks``, and by how much in ``lateMicroseconds``. A pause
    freezes the schedule: the grid shifts by the time the loop spent paused
    (``context.paused_seconds``), so paused time is neither counted as missed nor caught up.
    """

    def setup(self) -> None:
        self._anchor: float | None = None  # when tick 0 was due
        self._tick = 0  # the next tick to produce
        self._paused_seen = 0.0  # the loop's paused time already applied to the anchor

    async def produce(self) -> NodeData | None:
        cfg = self.config
        period = cfg.period_seconds
        if cfg.count is not None and self._tick >= cfg.count:
            raise ProducerExhausted
        now = time.monotonic()
        paused = self.context.paused_seconds
        if self._anchor is None:
            self._anchor = now
        else:  # the loop was paused since the last call: the schedule waited with it
            self._anchor += paused - self._paused_seen
        self._paused_seen = paused
        late = now - (self._anchor + self._tick * period)
        if cfg.overrun == "skip" and late >= period:
            missed = int(late // period)
            if cfg.count is not None:  # the schedule's last tick is due: produce it, late
                missed = min(missed, cfg.count - 1 - self._tick)
            if missed > 0:
                self._tick += missed
                self.context.count("missedTicks", missed)
        behind = now - (self._anchor + self._tick * period)
        if behind > 0:  # this tick is produced late: how late, for the console and status
            self.context.count("lateTicks")
            self.context.count("lateMicroseconds", round(behind * 1e6))
        if not await self.context.sleep_until(self._anchor + self._tick * period):
            return None  # woken for a pause or a stop: the engine takes it from here
        tick = self._tick
        self._tick += 1
        return NodeData(payload=tick)


class CounterConfig(NodeConfig):
    start: int = Field(0, description="First value.")
    step: int = Field(1, description="Added after each value.")
    count: int | None = Field(None, ge=0, description="How many values; unset: never ends.")


class CounterProducer(ProducerNode[CounterConfig]):
    """Emits start, start+step, ... as fast as the loop runs; ends after ``count`` values."""

    run_inline = True

    def setup(self) -> None:
        self._emitted = 0

    def produce(self) -> int:
        cfg = self.config
        if cfg.count is not None and self._emitted >= cfg.count:
            raise ProducerExhausted
        value = cfg.start + self._emitted * cfg.step
        self._emitted += 1
        return value


_LOG_FIELDS = ("loop", "iteration", "payload", "trace_id")


def _check_message(message: str) -> str:
    """Reject a format string that would fail on every call: unknown or positional fields."""
    try:
        _check_fields(message)
    except ValueError as exc:
        raise PydanticCustomError(
            "log_message", "not a valid message format string: {error}", {"error": str(exc)}
        ) from None
    return message


def _check_fields(template: str) -> None:
    for _text, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if root not in _LOG_FIELDS:
            raise ValueError(f"unknown field {{{field}}}; fields: {', '.join(_LOG_FIELDS)}")
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"unknown conversion !{conversion} in {{{field}}}")
        if spec:
            _check_fields(spec)  # a nested field, as in {payload:{width}}


class LogSinkConfig(NodeConfig):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    every: int = Field(1, ge=1, description="Log one iteration in this many, to bound volume.")
    message: Annotated[str, AfterValidator(_check_message)] = Field(
        "iteration {iteration}: {payload}",
        description="Format string; fields: loop, iteration, payload, trace_id.",
    )


class LogSink(BlockingNode[LogSinkConfig], NonBlockingNode[LogSinkConfig]):
    """Logs the data it receives (to ``ostinato.node.<loop>.<node>``) and passes it on.

    ``every`` counts calls: the 1st, (every+1)th, ... are logged, also when the node is
    non-blocking and its calls run on several side-effect threads at once.
    """

    run_inline = True

    def setup(self) -> None:
        self._level = logging.getLevelNamesMapping()[self.config.level]
        self._seen = itertools.count()  # next() is atomic: calls may come from several threads

    def process(self, data: NodeData) -> NodeData:
        if next(self._seen) % self.config.every == 0:
            self.logger.log(
                self._level,
                self.config.message.format(
                    loop=data.loop,
                    iteration=data.iteration,
                    payload=data.payload,
                    trace_id=data.trace_id,
                ),
                extra={"iteration": data.iteration},
            )
        return data


_TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_table(name: str) -> str:
    if not re.fullmatch(_TABLE_PATTERN, name):
        raise PydanticCustomError(
            "table_name",
            "'{name}' is not a valid table name (letters, digits and '_', not starting with a "
            "digit)",
            {"name": name},
        )
    if name.lower().startswith("sqlite_"):
        raise PydanticCustomError(
            "table_name", "table names starting with 'sqlite_' are reserved by SQLite", {}
        )
    return name


class SQLiteConfig(NodeConfig):
    path: str = Field(description="Database file; created with its table when missing.")
    table: Annotated[str, AfterValidator(_check_table)] = Field(
        "ostinato_records",
        description="Table the rows go to; created when missing.",
        json_schema_extra={"pattern": _TABLE_PATTERN},
    )
    synchronous: Literal["OFF", "NORMAL", "FULL"] = Field(
        "NORMAL",
        description="SQLite's synchronous pragma; NORMAL is durable across process crashes in "
        "WAL mode and much faster than FULL.",
    )


#: How long a writer waits for another connection to let it switch the file to WAL, seconds.
WAL_SWITCH_SECONDS = 10.0


def _wal(db: sqlite3.Connection, path: str) -> None:
    """Put the file in WAL mode. Switching needs the file to itself for a moment: when several
    loops open the same file at once, the losers get SQLITE_BUSY at once (the busy timeout
    does not cover it), so try again until the winner is done."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    delay = 0.005
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise RuntimeError(f"SQLite database {path!r} stayed locked: {exc}") from exc
            threading.Event().wait(delay)  # a bounded back-off, not a test's sleep
            delay = min(delay * 2, 0.2)
            continue
        if str(mode).lower() != "wal":
            raise RuntimeError(f"SQLite database {path!r} cannot use WAL mode ({mode})")
        return


class SQLiteWriter(NonBlockingNode[SQLiteConfig], BlockingNode[SQLiteConfig]):
    """Inserts one row per call (loop, iteration, trace id, times, JSON payload) and commits.

    A realistic "DB write" side effect; the file is in WAL mode so readers never block it.
    """

    def setup(self) -> None:
        cfg = self.config
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(cfg.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:  # SQLite's own message does not name the file
            raise RuntimeError(f"cannot open SQLite database {cfg.path!r}: {exc}") from exc
        try:
            _wal(self._db, cfg.path)
            self._db.execute(f"PRAGMA synchronous={cfg.synchronous}")
            self._db.execute(
                f'CREATE TABLE IF NOT EXISTS "{cfg.table}" (id INTEGER PRIMARY KEY, loop TEXT, '
                "iteration INTEGER, trace_id TEXT, created_at REAL, written_at REAL, payload TEXT)"
            )
        except BaseException:
            self._db.close()  # teardown is not called for a node whose setup failed
            raise

    def process(self, data: NodeData) -> NodeData:
        row: tuple[Any, ...] = (
            data.loop,
            data.iteration,
            data.trace_id,
            data.created_at,
            time.time(),
            json.dumps(data.payload, default=str),
        )
        with self._lock:
            self._db.execute(
                f'INSERT INTO "{self.config.table}" (loop, iteration, trace_id, created_at, '
                "written_at, payload) VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        return data

    def teardown(self) -> None:
        with self._lock:
            self._db.close()
