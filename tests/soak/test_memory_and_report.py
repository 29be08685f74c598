"""Memory growth after a warm-up, the run's verdict, and the report: its tables and a real PNG."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from soak.__main__ import main
from soak.accounting import RunSummary, count_messages, heal_times, memory_verdicts
from soak.chaos import Fault
from soak.collect import MemorySample
from soak.records import Identity, ReaderLog, Receipt, WriterLog
from soak.report import write

MIB = 2**20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.timeout(60)


def series(process: str, key: str, start: float, sizes_mib: list[float]) -> list[MemorySample]:
    return [
        MemorySample(at=start + 10 * i, process=process, key=key, rss_bytes=int(size * MIB))
        for i, size in enumerate(sizes_mib)
    ]


def test_growth_is_measured_after_the_warm_up_and_judged_only_when_long_enough() -> None:
    # A fast start (20 -> 40 MiB in the warm-up), then flat: no growth.
    flat = series("hub", "1", 0, [20, 30, 40] + [40.0] * 40)
    # Leaks 1 % a sample after the warm-up: 40 -> ~59 MiB.
    leaky = series("worker-0", "2", 0, [20, 30, 40] + [40 * 1.01**i for i in range(40)])
    # Replaced after a minute: too short to judge.
    short = series("worker-1", "3", 0, [40, 41, 42, 43, 44, 45])
    verdicts = {v.process: v for v in memory_verdicts(flat + leaky + short, 30, 300)}
    assert verdicts["hub"].judged
    assert abs(verdicts["hub"].growth) < 0.001
    assert verdicts["worker-0"].judged
    assert verdicts["worker-0"].growth > 0.3
    assert not verdicts["worker-1"].judged


def test_each_incarnation_is_its_own_series() -> None:
    first = series("writer-0", "100", 0, [40.0] * 10)
    second = series("writer-0", "101", 100, [20.0] * 10)  # a fresh process: not a shrink
    verdicts = memory_verdicts(first + second, 0, 50)
    assert sorted((v.key, round(v.growth, 3)) for v in verdicts) == [("100", 0.0), ("101", 0.0)]


def summary(samples: list[MemorySample], lost: bool = False) -> RunSummary:
    w = WriterLog(Identity("writer", "writer", "h", 1, "w1", 0.0))
    w.written = {s: 1000.0 + s for s in range(1, 101)}
    w.acked = dict(w.written)
    receipts = [
        Receipt("events", "w1", s, s, False, 1000.0 + s, 1000.5 + s)
        for s in range(1, 101)
        if not (lost and s == 50)
    ]
    # The monitor's process was killed after seq 30 and replaced (pid 2) at once.
    r1 = ReaderLog(Identity("reader", "monitor", "h", 1, "r1", 0.0), receipts[:30])
    r2 = ReaderLog(Identity("reader", "monitor", "h", 2, "r2", 1030.5), receipts[30:])
    faults = [
        Fault(kind="loop", target="monitor/0", how="SIGKILL", loop="monitor", at=1030.0,
              replaced_at=1031.0, match_pid=2),
        Fault(kind="hub", target="hub", how="SIGKILL", at=1060.0, replaced_at=1062.5),
    ]  # fmt: skip
    messages = count_messages([w], [r1, r2], {"events": "broadcast"}, {"events": ["monitor"]}, 10)
    return RunSummary(
        name="synthetic",
        description="A run made up for the test.",
        started_at=1000.0,
        traffic_seconds=100.0,
        target_per_second=1.0,
        seed=3,
        messages=messages,
        heals=heal_times(faults, [w], [r1, r2]),
        memory=memory_verdicts(samples, 10, 50),
        samples=samples,
        warmup_seconds=10,
        min_span_seconds=50,
    )


def test_a_run_fails_for_a_lost_acknowledged_message_or_a_memory_leak() -> None:
    flat = series("hub", "1", 1000, [40.0] * 12)
    assert summary(flat).failures == []
    assert summary(flat, lost=True).failures == ["1 acknowledged message(s) lost"]
    leaky = series("hub", "1", 1000, [40.0 + i for i in range(12)])
    (why,) = summary(leaky).failures
    assert why.startswith("hub (1) grew ")
    assert "after its warm-up" in why


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, data[:8]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_has_its_tables_and_a_real_png(tmp_path: Path) -> None:
    run = summary(series("hub", "1", 1000, [40.0] * 12), lost=True)
    page = write([run], tmp_path)
    text = page.read_text()
    assert "## synthetic" in text
    assert "Verdict: **FAIL**: 1 acknowledged message(s) lost" in text
    assert "| events | monitor | 100 | 100 | 99 | 1 |" in text
    assert "Lost, first examples (writer incarnation#seq): w1#50" in text
    assert "| 1 | +30 s | loop | monitor/0 | SIGKILL | 1.0 | 1.5 | 1.5 |" in text
    # The first message through the new hub: written after the fault, received once it ran.
    assert "| 2 | +60 s | hub | hub | SIGKILL | 2.5 | 2.5 | 2.5 |" in text
    assert "| loop | 1 | 1.0 / 1.0 | 1.5 / 1.5 | 1.5 / 1.5 |" in text
    assert "| hub | 1 | 1 | 40.0 | 40.0 | +0.0% |" in text
    assert "![synthetic: throughput, memory and faults](synthetic.png)" in text
    image = (tmp_path / "synthetic.png").read_bytes()
    assert png_size(image) == (1100, 750)
    assert len(image) > 10_000  # drawn, not an empty canvas


def test_a_report_of_a_directory_without_runs_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"python -m soak report: no run in {tmp_path} (no */run.json)\n"
