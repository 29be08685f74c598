"""A durable queue's store failing under the hub (docs/messaging.md: "persisted before the writer
gets its acknowledgement"): the hub must keep serving, never acknowledge a message that is not
on disk, answer every put, and keep its consumers served.

The store is a real DurableStore in tmp_path behind a wrapper that fails the way DurableStore
documents it fails on any SQLite error (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY past the busy
timeout): it rolls the whole open batch back, then raises DurableStoreError.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import zmq

from ostinato._messaging._hub import Hub
from ostinato._messaging._store import DurableStore, DurableStoreError
from ostinato._messaging._wire import decode, encode
from ostinato._model._spec import QueueSpec

WAIT = 5.0


class FailingStore:
    """DurableStore, except that ``add`` of a chosen payload, or the next ``done`` once armed,
    fails like a real SQLite error does: open batch rolled back, DurableStoreError raised."""

    def __init__(self, store: DurableStore) -> None:
        self.store = store
        self.fail_add: bytes | None = None
        self.fail_done = False

    def _fail(self, what: str) -> None:
        self.store._abort()  # what DurableStore._guard does on an sqlite3.Error
        raise DurableStoreError(f"durable store: {what} failed, open batch rolled back: disk I/O")

    def last_id(self, queue: str) -> int:
        return self.store.last_id(queue)

    def add(
        self, queue: str, msg_id: int, payload: bytes, meta: bytes, groups: Sequence[str]
    ) -> None:
        if payload == self.fail_add:
            self._fail("add")
        self.store.add(queue, msg_id, payload, meta, groups)

    def done(self, queue: str, group: str, msg_ids: Any) -> None:
        if self.fail_done:
            self.fail_done = False
            self._fail("done")
        self.store.done(queue, group, msg_ids)

    def pending(self, queue: str) -> list[tuple[str, int, bytes, bytes]]:
        return self.store.pending(queue)

    def commit(self) -> None:
        self.store.commit()


class Rig:
    def __init__(self, folder: Path) -> None:
        self.db = folder / "queues.db"
        self.store = FailingStore(DurableStore(self.db))
        self.hub = Hub(
            [QueueSpec.model_validate({"name": "d", "durable": True})],
            {"d": ["reader"]},
            store=self.store,
        )
        self.ctx = zmq.Context()
        self.sockets: list[zmq.Socket[Any]] = []

    def dealer(self, identity: bytes) -> zmq.Socket[Any]:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.hub.endpoint)
        self.sockets.append(sock)
        return sock

    def restart(self) -> list[tuple[str, int, bytes, bytes]]:
        """Stop the hub, close the store, and read what a restarted hub would find on disk."""
        self.close()
        with DurableStore(self.db) as store:
            return store.pending("d")

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()
            self.store.store.close()
            self.hub = None  # type: ignore[assignment]
        for sock in self.sockets:
            sock.close(linger=0)
        self.sockets.clear()


@pytest.fixture
def rig(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Rig]:
    caplog.set_level(logging.CRITICAL, logger="ostinato.hub")
    r = Rig(tmp_path)
    yield r
    r.close()
    r.ctx.term()


def answers(sock: zmq.Socket[Any], kind: str, timeout: float = WAIT, until: int = 1) -> list[Any]:
    """Messages of ``kind`` received within ``timeout`` (returns as soon as ``until`` came)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < until and time.monotonic() < deadline:
        if sock.poll(20):
            msg = decode(sock.recv())
            if msg["t"] == kind:
                got.append(msg)
    return got


def test_a_store_error_on_an_ack_does_not_kill_the_hub(rig: Rig) -> None:
    sock = rig.dealer(b"client")
    sock.send(encode("puts", q="d", seq=1, payloads=[b"p"], metas=[b""], since=1, epoch=1))
    sock.send(encode("sub", q="d", loop="reader", credit=1))
    msgs = answers(sock, "msgs")
    assert msgs
    rig.store.fail_done = True
    first = msgs[0]["ids"][0]
    sock.send(encode("ack", q="d", loop="reader", runs=[[first, first]]))
    sock.send(encode("ping"))
    assert answers(sock, "pong"), "the hub stopped answering"
    assert rig.hub._thread.is_alive()


def test_a_put_is_never_acknowledged_when_its_store_batch_was_rolled_back(rig: Rig) -> None:
    rig.store.fail_add = b"m3"
    writer = rig.dealer(b"writer")
    writer.send(
        encode("puts", q="d", seq=1, payloads=[b"m2", b"m3"], metas=[b""], since=1, epoch=1)
    )
    got = answers(writer, "acks", timeout=1.0, until=2)
    acked_ok = {seq for msg in got for lo, hi in msg["runs"] for seq in range(lo, hi + 1)}
    on_disk = {payload for _group, _id, payload, _meta in rig.restart()}
    stored = {1: b"m2", 2: b"m3"}
    assert {stored[seq] for seq in acked_ok} <= on_disk, (acked_ok, on_disk)


def test_a_put_whose_store_write_fails_is_answered_with_an_error(rig: Rig) -> None:
    rig.store.fail_add = b"bad"
    writer = rig.dealer(b"writer")
    writer.send(encode("puts", q="d", seq=7, payloads=[b"bad"], metas=[b""], since=7, epoch=1))
    got = answers(writer, "acks", timeout=1.0)
    assert [msg["q"] for msg in got] == ["d"]
    assert got[0]["runs"] == []  # not accepted:
    assert [r[0] for r in got[0]["refused"]] == [7]  # an error: the message is not stored
    assert rig.hub.queue_status()["d"]["enqueued"] == 0  # and nobody got it


def test_a_failed_store_write_on_an_ack_does_not_starve_the_consumer(rig: Rig) -> None:
    writer, reader = rig.dealer(b"writer"), rig.dealer(b"reader")
    reader.send(encode("sub", q="d", loop="reader", credit=1))
    writer.send(encode("puts", q="d", seq=1, payloads=[b"a"], metas=[b""], since=1, epoch=1))
    first = answers(reader, "msgs")
    assert first
    rig.store.fail_done = True
    done = first[0]["ids"][0]
    reader.send(encode("ack", q="d", loop="reader", runs=[[done, done]]))
    writer.send(encode("puts", q="d", seq=2, payloads=[b"b"], metas=[b""], since=2, epoch=1))
    assert answers(writer, "acks", until=2)  # the second put was taken in
    second = answers(reader, "msgs", timeout=2.0)
    assert [m["payloads"][0] for m in second] in ([b"b"], [b"a"])  # b, or a again: not nothing


def test_ostinato_run_refuses_an_unusable_store_in_one_line(tmp_path: Path) -> None:
    """A queues.db that is not SQLite gave a traceback; it is one line, and nothing runs."""
    workflow = tmp_path / "durable.yaml"
    workflow.write_text(
        "apiVersion: ostinato.dev/v1alpha1\nkind: Workflow\nmetadata: {name: durable}\n"
        "spec:\n  queues: [{name: q, durable: true}]\n  loops:\n"
        "    - {name: a, producer: {name: c, class: CounterProducer, config: {count: 3}},"
        " nodes: [{name: put, kind: blocking, queue: {write: q}}]}\n"
        "    - {name: b, producer: {name: get, queue: {read: q}}}\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "queues.db").write_bytes(b"not a database, someone else's file\n" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "ostinato", "run", str(workflow), "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ostinato run: durable store {state / 'queues.db'}: not a usable SQLite database: "
        "file is not a database"
    ]
    assert (state / "queues.db").read_bytes().startswith(b"not a database")  # left as it was
