"""The records the workload's nodes write: read back as written, and kept when the process
that wrote them is killed before it closes anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from soak.records import ReaderRecorder, WriterRecorder, count_received, load

pytestmark = pytest.mark.timeout(60)


def test_records_read_back_as_written(tmp_path: Path) -> None:
    w = WriterRecorder(tmp_path, "writer")
    r = ReaderRecorder(tmp_path, "monitor")
    for seq in (1, 2, 3):
        w.written(seq, 10.0 + seq)
    w.acked(1, 11.5)
    w.acked(2, 12.5)
    r.received("events", w.identity.incarnation, 2, 7, True, 12.0, 13.0)
    r.received("events", w.identity.incarnation, 1, 8, False, 11.0, 14.0)
    writers, readers = load(tmp_path)
    (wl,) = writers
    (rl,) = readers
    assert wl.identity == w.identity
    assert wl.written == {1: 11.0, 2: 12.0, 3: 13.0}
    assert wl.acked == {1: 11.5, 2: 12.5}
    assert rl.identity.role == "reader"
    assert rl.identity.loop == "monitor"
    assert [(x.seq, x.message_id, x.redelivered, x.at) for x in rl.receipts] == [
        (2, 7, True, 13.0),
        (1, 8, False, 14.0),
    ]
    assert count_received(tmp_path) == 2


def test_a_record_survives_its_process_being_killed(tmp_path: Path) -> None:
    # The process records, then dies without closing anything (as under SIGKILL).
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from soak.records import ReaderRecorder
        r = ReaderRecorder(Path({str(tmp_path)!r}), "worker")
        for seq in range(1, 501):
            r.received("jobs", "w", seq, seq, False, 1.0, 2.0)
        os.kill(os.getpid(), 9)
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, timeout=30, check=False)
    assert done.returncode == -9
    (reader,) = load(tmp_path)[1]
    assert [x.seq for x in reader.receipts] == list(range(1, 501))


def test_a_file_that_is_not_a_record_is_named(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "stray.db")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match=r"stray\.db: not a soak record \('role'\)"):
        load(tmp_path)
