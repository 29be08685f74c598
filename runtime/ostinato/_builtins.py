"""Built-in nodes people can run without writing code: timers, counters, a log sink, SQLite."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from typing import Any, Literal

from pydantic import Field

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
    count: int | None = Field(None, ge=1, description="Stop after this many ticks; unset: never.")


class IntervalProducer(ProducerNode[IntervalConfig]):
    """Fixed-rate ticks on a grid anchored at the first call; payload is the tick number.

    Missed ticks are counted in the node's ``missedTicks`` counter.
    """

    def setup(self) -> None:
        self._next: float | None = None
        self._tick = 0

    async def produce(self) -> NodeData | None:
        cfg = self.config
        if cfg.count is not None and self._tick >= cfg.count:
            raise ProducerExhausted
        now = time.monotonic()
        if self._next is None:
            self._next = now
        elif now > self._next + cfg.period_seconds and cfg.overrun == "skip":
            missed = int((now - self._next) // cfg.period_seconds)
            self._next += missed * cfg.period_seconds
            self._tick += missed
            self.context.count("missedTicks", missed)
        if not await self.context.sleep_until(self._next):
            return None
        tick = self._tick
        self._tick += 1
        self._next += cfg.period_seconds
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


class LogSinkConfig(NodeConfig):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    every: int = Field(1, ge=1, description="Log one iteration in this many, to bound volume.")
    message: str = Field(
        "iteration {iteration}: {payload}",
        description="Format string; fields: loop, iteration, payload, trace_id.",
    )


class LogSink(BlockingNode[LogSinkConfig], NonBlockingNode[LogSinkConfig]):
    """Logs the data it receives (to ``ostinato.node.<loop>.<node>``) and passes it on."""

    run_inline = True

    def setup(self) -> None:
        self._level = logging.getLevelNamesMapping()[self.config.level]
        self._seen = 0

    def process(self, data: NodeData) -> NodeData:
        self._seen += 1
        if (self._seen - 1) % self.config.every == 0:
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


class SQLiteConfig(NodeConfig):
    path: str = Field(description="Database file; created with its table when missing.")
    table: str = Field("ostinato_records", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    synchronous: Literal["OFF", "NORMAL", "FULL"] = Field(
        "NORMAL",
        description="SQLite's synchronous pragma; NORMAL is durable across process crashes in "
        "WAL mode and much faster than FULL.",
    )


class SQLiteWriter(NonBlockingNode[SQLiteConfig], BlockingNode[SQLiteConfig]):
    """Inserts one row per call (loop, iteration, trace id, times, JSON payload) and commits.

    A realistic "DB write" side effect; the file is in WAL mode so readers never block it.
    """

    def setup(self) -> None:
        cfg = self.config
        self._lock = threading.Lock()
        self._db = sqlite3.connect(cfg.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={cfg.synchronous}")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {cfg.table} (id INTEGER PRIMARY KEY, loop TEXT, "
            "iteration INTEGER, trace_id TEXT, created_at REAL, written_at REAL, payload TEXT)"
        )

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
                f"INSERT INTO {self.config.table} (loop, iteration, trace_id, created_at, "
                "written_at, payload) VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        return data

    def teardown(self) -> None:
        with self._lock:
            self._db.close()
