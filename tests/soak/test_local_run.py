"""The local soak's machinery for real, briefly: `ostinato run` with process loops, one loop
process SIGKILLed, and every acknowledged message found in the readers' records."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.__main__ import main
from soak.chaos import ChaosSettings
from soak.local import RunHost
from soak.runner import RunSettings, soak
from soak.workload import WorkloadSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_short_local_soak_with_one_kill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    settings = RunSettings(
        traffic_seconds=20,
        workload=WorkloadSettings(messages_per_second=200, writers=2),
        # One loop fault, a few seconds in; no hub to kill under `ostinato run`.
        chaos=ChaosSettings(
            seed=5, hub_kills=0, operator_restarts=0, loop_interval_seconds=(100.0, 100.0)
        ),
        sample_every_seconds=2,
        drain_timeout_seconds=60,
        flowing_timeout_seconds=60,
    )
    out = tmp_path / "local-run"
    run = soak(RunHost(out, settings), settings, out)

    assert run.failures == []
    m = run.messages
    assert m.total("lost") == 0
    assert m.total("phantom") == 0
    # 200/s for 20 s is 4,000; the kill and a loaded machine cost some of it.
    assert m.total("received") > 1500, m.total("received")
    assert m.total("acked") <= m.total("written") <= m.total("acked") + 2 * m.writer_incarnations
    (heal,) = run.heals
    assert heal.fault.kind == "loop"
    assert heal.fault.how == "SIGKILL"
    assert heal.replaced_seconds is not None
    assert heal.flowing_seconds is not None
    assert 0 < heal.replaced_seconds < 30
    assert 0 < heal.flowing_seconds < 30
    # The killed loop came back as a new incarnation of its own.
    assert m.writer_incarnations + m.reader_incarnations == 6
    processes = {s.process for s in run.samples}
    assert processes == {"hub", "writer-0", "writer-1", "worker-0", "worker-1", "monitor-0"}

    # The run's directory holds what its report needs: counted again, the same figures.
    assert main(["report", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.md").read_text()
    assert "## local-run" in page
    assert "Verdict: **PASS**" in page
    assert f"**{m.total('received'):,} messages**" in page
    assert (tmp_path / "local-run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
