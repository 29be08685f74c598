"""Durable queues: messages kept in SQLite (WAL) until each consumer group has acknowledged them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = ["SCHEMA_VERSION", "DurableStore", "DurableStoreError"]

#: PRAGMA user_version of the files this code writes; a file with another version is refused.
SCHEMA_VERSION = 1
#: PRAGMA application_id marking a file as an ostinato durable store ("OSTN").
APPLICATION_ID = 0x4F53544E
#: How long a statement waits for a lock held by another connection (a status reader, a backup).
BUSY_TIMEOUT_MS = 5000

# ``meta`` comes before ``payload`` so that reading it never walks a large payload's overflow pages.
_SCHEMA = """
CREATE TABLE queues (
    qid     INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL UNIQUE,
    last_id INTEGER NOT NULL
);
CREATE TABLE messages (
    qid     INTEGER NOT NULL,
    id      INTEGER NOT NULL,
    meta    BLOB    NOT NULL,
    payload BLOB    NOT NULL,
    PRIMARY KEY (qid, id)
);
CREATE TABLE pending (
    qid INTEGER NOT NULL,
    grp TEXT    NOT NULL,
    id  INTEGER NOT NULL,
    PRIMARY KEY (qid, grp, id)
) WITHOUT ROWID;
CREATE INDEX pending_by_message ON pending (qid, id);
"""

_DELETE_PENDING = "DELETE FROM pending WHERE qid = ? AND grp = ? AND id = ?"
_DELETE_UNREFERENCED = (
    "DELETE FROM messages WHERE qid = ?1 AND id = ?2"
    " AND NOT EXISTS (SELECT 1 FROM pending WHERE qid = ?1 AND id = ?2)"
)


class DurableStoreError(RuntimeError):
    """The store file is unusable (not SQLite, corrupt, another schema) or an operation failed."""


class DurableStore:
    """The messages of ``durable: true`` queues, in one SQLite file in WAL mode.

    Owned by one thread at a time (the hub's). Writes go into a batch that the first ``add`` or
    ``done`` after a commit opens (``BEGIN IMMEDIATE``) and ``commit()`` closes: one transaction,
    one sync, however many messages (group commit). Rows of ``add`` are buffered and written with
    ``executemany`` at the next ``commit``/``done``/read. Any SQLite error rolls the whole open
    batch back and is raised as :class:`DurableStoreError`: its writers must not be acknowledged.
    """

    def __init__(
        self, path: str | Path, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    ) -> None:
        """Open or create the database file. NORMAL in WAL mode survives a process crash (kill -9);
        FULL also a power loss."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.path = Path(path).absolute()  # errors name the file wherever the cwd is
        self._qids: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._new_msgs: list[tuple[int, int, bytes, bytes]] = []
        self._new_pending: list[tuple[int, str, int]] = []
        self._new_last: dict[int, int] = {}
        self._closed = False
        try:
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # explicit BEGIN/COMMIT only
                check_same_thread=False,  # one owner at a time, not necessarily its creator
            )
        except sqlite3.Error as exc:
            raise DurableStoreError(f"durable store {self.path}: cannot open: {exc}") from exc
        try:
            self._open(synchronous)
        except BaseException:
            self._db.close()
            self._closed = True
            raise

    def _open(self, synchronous: str) -> None:
        db = self._db
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # The first read of the file: a non-SQLite file fails here.
            app_id, version = self._header()
            if app_id == 0 and version == 0 and not self._has_tables():
                self._create_schema()
                app_id, version = self._header()
            if app_id != APPLICATION_ID:
                raise DurableStoreError(
                    f"durable store {self.path}: not an ostinato durable store "
                    f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
                )
            if version > SCHEMA_VERSION:
                raise DurableStoreError(
                    f"durable store {self.path}: schema version {version} is newer than this "
                    f"ostinato supports ({SCHEMA_VERSION}); upgrade ostinato or use another file"
                )
            if version != SCHEMA_VERSION:
                raise DurableStoreError(
                    f"durable store {self.path}: unsupported schema version {version} "
                    f"(expected {SCHEMA_VERSION})"
                )
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DurableStoreError(
                    f"durable store {self.path}: cannot use WAL journal mode (got {mode!r}); "
                    "the file must be on a local filesystem"
                )
            db.execute(f"PRAGMA synchronous = {synchronous}")
        except sqlite3.Error as exc:
            raise DurableStoreError(
                f"durable store {self.path}: not a usable SQLite database: {exc}"
            ) from exc

    def _header(self) -> tuple[int, int]:
        app_id = int(self._db.execute("PRAGMA application_id").fetchone()[0])
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        return app_id, version

    def _has_tables(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None

    def _create_schema(self) -> None:
        db = self._db
        # WAL first: journal_mode cannot change inside a transaction, and it is persistent.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_tables():  # another process may have won the race
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        if self._closed:
            raise DurableStoreError(f"durable store {self.path}: {what} after close()")
        try:
            yield
        except sqlite3.Error as exc:
            had_batch = self._db.in_transaction
            self._abort()
            rolled_back = ", open batch rolled back" if had_batch else ""
            raise DurableStoreError(
                f"durable store {self.path}: {what} failed{rolled_back}: {exc}"
            ) from exc

    def _abort(self) -> None:
        """Roll the open batch back and forget every cache it may have touched."""
        self._new_msgs.clear()
        self._new_pending.clear()
        self._new_last.clear()
        self._qids.clear()
        self._last.clear()
        if self._db.in_transaction:
            # SQLite may already have rolled back by itself (e.g. on a full disk).
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def _qid(self, queue: str, *, create: bool) -> int | None:
        qid = self._qids.get(queue)
        if qid is None:
            row = self._db.execute("SELECT qid FROM queues WHERE name = ?", (queue,)).fetchone()
            if row is not None:
                qid = int(row[0])
            elif create:
                self._begin()
                cur = self._db.execute("INSERT INTO queues (name, last_id) VALUES (?, 0)", (queue,))
                qid = cur.lastrowid
                assert qid is not None
            else:
                return None
            self._qids[queue] = qid
        return qid

    def _flush(self) -> None:
        """Write the buffered rows of ``add`` into the open batch."""
        db = self._db
        if self._new_msgs:
            db.executemany(
                "INSERT INTO messages (qid, id, meta, payload) VALUES (?, ?, ?, ?)",
                self._new_msgs,
            )
            self._new_msgs.clear()
        if self._new_pending:
            db.executemany("INSERT INTO pending (qid, grp, id) VALUES (?, ?, ?)", self._new_pending)
            self._new_pending.clear()
        if self._new_last:
            db.executemany(
                "UPDATE queues SET last_id = ? WHERE qid = ?",
                [(last, qid) for qid, last in self._new_last.items()],
            )
            self._new_last.clear()

    # -- interface ----------------------------------------------------------------------------

    def last_id(self, queue: str) -> int:
        """The highest message id ever stored for ``queue`` (0 if none), so ids keep growing
        across restarts. Counts the open batch's adds; ids of a rolled-back batch may be reused."""
        last = self._last.get(queue)
        if last is None:
            with self._guard("last_id"):
                row = self._db.execute(
                    "SELECT last_id FROM queues WHERE name = ?", (queue,)
                ).fetchone()
            last = 0 if row is None else int(row[0])
            self._last[queue] = last
        return last

    def add(
        self, queue: str, msg_id: int, payload: bytes, meta: bytes, groups: Sequence[str]
    ) -> None:
        """Store a message pending for each consumer group; part of the open batch until commit().

        ``msg_id`` must be above ``last_id(queue)`` (else ValueError, nothing changed). With no
        groups nothing is pending, so only the id is recorded."""
        last = self.last_id(queue)
        if msg_id <= last:
            raise ValueError(
                f"durable queue {queue!r}: message id {msg_id} is not above the last id {last}"
            )
        # The buffer outlives this call: never keep a view of a buffer the caller may reuse.
        payload = payload if isinstance(payload, bytes) else bytes(payload)
        meta = meta if isinstance(meta, bytes) else bytes(meta)
        with self._guard("add"):
            self._begin()
            qid = self._qid(queue, create=True)
            assert qid is not None
            unique = dict.fromkeys(groups)
            if unique:  # with no consumer group, nothing is pending: only the id is kept
                self._new_msgs.append((qid, msg_id, meta, payload))
                self._new_pending.extend((qid, group, msg_id) for group in unique)
            self._new_last[qid] = msg_id
            self._last[queue] = msg_id

    def done(self, queue: str, group: str, msg_ids: Iterable[int]) -> None:
        """The group has acknowledged (or dropped) these messages; a message acknowledged by all
        its groups is deleted. Part of the open batch. Unknown ids (or queue) are ignored."""
        ids = list(dict.fromkeys(msg_ids))
        if not ids:
            return
        with self._guard("done"):
            # add() creates the queue's row at once, so an unknown queue has nothing buffered.
            qid = self._qid(queue, create=False)
            if qid is None:
                return
            self._begin()
            self._flush()
            db = self._db
            db.executemany(_DELETE_PENDING, [(qid, group, i) for i in ids])
            db.executemany(_DELETE_UNREFERENCED, [(qid, i) for i in ids])

    def commit(self) -> None:
        """Make everything since the last commit durable (one transaction per batch: group
        commit). The hub calls this before it sends the writers' acknowledgements."""
        with self._guard("commit"):
            self._flush()
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def pending(self, queue: str) -> list[tuple[str, int, bytes, bytes]]:
        """(group, id, payload, meta) of every message not yet acknowledged by that group, by
        group then id ascending: what a restarted hub must deliver."""
        with self._guard("pending"):
            self._flush()
            qid = self._qid(queue, create=False)
            if qid is None:
                return []
            db = self._db
            # One bytes object per message, shared by every group that still has it pending.
            messages: dict[int, tuple[bytes, bytes]] = {
                mid: (payload, meta)
                for mid, meta, payload in db.execute(
                    "SELECT id, meta, payload FROM messages WHERE qid = ?", (qid,)
                )
            }
            out: list[tuple[str, int, bytes, bytes]] = []
            for group, mid in db.execute(
                "SELECT grp, id FROM pending WHERE qid = ? ORDER BY grp, id", (qid,)
            ):
                payload, meta = messages[mid]
                out.append((group, mid, payload, meta))
            return out

    def counts(self, queue: str) -> dict[str, int]:
        """Pending messages per group (for status/metrics); a group with none pending is absent."""
        with self._guard("counts"):
            self._flush()
            qid = self._qid(queue, create=False)
            if qid is None:
                return {}
            rows = self._db.execute(
                "SELECT grp, count(*) FROM pending WHERE qid = ? GROUP BY grp ORDER BY grp", (qid,)
            )
            return {str(group): int(n) for group, n in rows}

    def close(self) -> None:
        """Close the file; an uncommitted batch is discarded (like a crash). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._abort()
        finally:
            self._db.close()

    def __enter__(self) -> DurableStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
