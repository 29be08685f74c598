"""The soak's records: one SQLite file per process incarnation, written by the workload's nodes
inside the loops and read back by the accounting afterwards. One schema, kept here for both.

A writer incarnation records each sequence number it stamps (``written``) and each one the hub
acknowledged (``acked``, after the queue writers returned); a reader incarnation records every
message it received (``received``), before its iteration ends and so before the hub hears the
acknowledgement. Each row is committed on its own (WAL, ``synchronous = NORMAL``), so a record
survives its process being killed: what a record says happened, happened.

Imports only the standard library: it runs in loop pods.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Identity",
    "ReaderLog",
    "ReaderRecorder",
    "Receipt",
    "WriterLog",
    "WriterRecorder",
    "count_received",
    "load",
    "new_identity",
]

Role = Literal["writer", "reader"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS written (seq INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS acked (seq INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS received (
    n INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    redelivered INTEGER NOT NULL,
    stamped_at REAL NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Identity:
    """One process incarnation of one loop: a restarted process is a new incarnation."""

    role: Role
    loop: str
    #: The host name: the pod's name on Kubernetes (stable across the pod's recreations).
    host: str
    pid: int
    #: Unique per process start; sorts by start time.
    incarnation: str
    #: Wall-clock seconds since the epoch when the incarnation opened its record.
    started_at: float


def new_identity(role: Role, loop: str) -> Identity:
    now = time.time()
    incarnation = f"{int(now * 1000):012x}-{os.urandom(4).hex()}"
    return Identity(role, loop, socket.gethostname(), os.getpid(), incarnation, now)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


class _Recorder:
    def __init__(self, directory: Path, identity: Identity) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self.path = directory / f"{identity.role}-{identity.loop}-{identity.incarnation}.db"
        self._db = _connect(self.path)
        self._db.executescript(_SCHEMA)
        meta = {
            "role": identity.role,
            "loop": identity.loop,
            "host": identity.host,
            "pid": str(identity.pid),
            "incarnation": identity.incarnation,
            "started_at": repr(identity.started_at),
        }
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())

    def close(self) -> None:
        self._db.close()


class WriterRecorder(_Recorder):
    """A writer incarnation's record: sequence numbers stamped, then acknowledged."""

    def __init__(self, directory: Path, loop: str) -> None:
        super().__init__(directory, new_identity("writer", loop))

    def written(self, seq: int, at: float) -> None:
        self._db.execute("INSERT INTO written VALUES (?, ?)", (seq, at))

    def acked(self, seq: int, at: float) -> None:
        self._db.execute("INSERT INTO acked VALUES (?, ?)", (seq, at))


class ReaderRecorder(_Recorder):
    """A reader incarnation's record: every message received, in the order received."""

    def __init__(self, directory: Path, loop: str) -> None:
        super().__init__(directory, new_identity("reader", loop))

    def received(
        self,
        queue: str,
        writer: str,
        seq: int,
        message_id: int,
        redelivered: bool,
        stamped_at: float,
        at: float,
    ) -> None:
        self._db.execute(
            "INSERT INTO received (queue, writer, seq, message_id, redelivered, stamped_at, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue, writer, seq, message_id, int(redelivered), stamped_at, at),
        )


# -- reading them back ---------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """One message as a reader received it."""

    queue: str
    #: The writer's incarnation.
    writer: str
    seq: int
    message_id: int
    redelivered: bool
    stamped_at: float
    at: float


@dataclass
class WriterLog:
    identity: Identity
    #: seq -> when stamped / when acknowledged (wall clock).
    written: dict[int, float] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)


@dataclass
class ReaderLog:
    identity: Identity
    #: In the order received.
    receipts: list[Receipt] = field(default_factory=list)


def _identity(db: sqlite3.Connection, path: Path) -> Identity:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    try:
        role = meta["role"]
        if role not in ("writer", "reader"):
            raise ValueError(f"role {role!r}")
        return Identity(
            role,
            meta["loop"],
            meta["host"],
            int(meta["pid"]),
            meta["incarnation"],
            float(meta["started_at"]),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a soak record ({exc})") from None


def _files(directory: Path) -> Iterator[Path]:
    yield from sorted(p for p in directory.glob("*.db") if p.is_file())


def load(directory: Path) -> tuple[list[WriterLog], list[ReaderLog]]:
    """Every record in ``directory``: the writers' and the readers' logs."""
    writers: list[WriterLog] = []
    readers: list[ReaderLog] = []
    for path in _files(directory):
        db = sqlite3.connect(path, timeout=30)
        try:
            identity = _identity(db, path)
            if identity.role == "writer":
                log = WriterLog(identity)
                log.written = dict(db.execute("SELECT seq, at FROM written").fetchall())
                log.acked = dict(db.execute("SELECT seq, at FROM acked").fetchall())
                writers.append(log)
            else:
                rows = db.execute(
                    "SELECT queue, writer, seq, message_id, redelivered, stamped_at, at "
                    "FROM received ORDER BY n"
                ).fetchall()
                readers.append(
                    ReaderLog(
                        identity,
                        [Receipt(q, w, s, m, bool(r), st, at) for q, w, s, m, r, st, at in rows],
                    )
                )
        finally:
            db.close()
    return writers, readers


def count_received(directory: Path) -> int:
    """Receipts recorded so far in ``directory`` (for progress lines while a soak runs)."""
    total = 0
    for path in _files(directory):
        if not path.name.startswith("reader-"):
            continue
        try:
            db = sqlite3.connect(path, timeout=1)
            try:
                row = db.execute("SELECT max(n) FROM received").fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            continue
        total += int(row[0] or 0)
    return total
