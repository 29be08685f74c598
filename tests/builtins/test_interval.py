"""IntervalProducer: a fixed-rate grid, count, overrun skip|catchUp, prompt pause and stop."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from ostinato import LoopState, LoopStatus

from .nodes import read_records, setup_time
from .support import PROMPT, node, recorder, running, workflow

POOLS = ["thread", "asyncio", "process"]


def interval(**config: Any) -> dict[str, Any]:
    return node("tick", "IntervalProducer", **config)


def missed_ticks(status: LoopStatus) -> int:
    return status.node("tick").counters.get("missedTicks", 0)


@pytest.mark.parametrize("pool", POOLS)
def test_count_gives_exactly_that_many_ticks(pool: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    # catchUp: a loaded machine that stalls past a tick must not make the count come out short.
    doc = workflow(pool, interval(periodSeconds=0.01, count=6, overrun="catchUp"), [recorder(out)])
    with running(doc) as orch:
        assert orch.wait(PROMPT), "the loop did not stop by itself after count ticks"
        status = orch.loop("main").status()
    assert status.state is LoopState.FINISHED
    assert status.iterations == 6
    assert missed_ticks(status) == 0
    records = read_records(out)
    assert [r["payload"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]


def assert_on_grid(out: Path, period: float) -> None:
    """Tick k is never produced before k periods after the anchor.

    The recorder's setup time is a lower bound of the anchor (setup precedes the producer's
    first call), so the check needs no slack however slow the machine is.
    """
    anchor_bound = setup_time(out)
    for r in read_records(out):
        assert r["t"] - anchor_bound >= r["payload"] * period, r


@pytest.mark.parametrize("pool", POOLS)
def test_rate_follows_the_period(pool: str, tmp_path: Path) -> None:
    period, count = 0.02, 20
    out = tmp_path / "rec.jsonl"
    doc = workflow(
        pool, interval(periodSeconds=period, count=count, overrun="catchUp"), [recorder(out)]
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
    records = read_records(out)
    assert [r["payload"] for r in records] == list(range(count))
    times = [r["t"] for r in records]
    assert all(b >= a for a, b in itertools.pairwise(times))
    # 20 ticks take at least 19 periods (a producer that ignored its period: a few ms) ...
    assert times[-1] - setup_time(out) >= (count - 1) * period
    assert_on_grid(out, period)
    # ... and, machines being noisy, nothing absurdly longer.
    assert times[-1] - times[0] < (count - 1) * period + 5.0


@pytest.mark.parametrize("pool", POOLS)
def test_skip_drops_missed_ticks_and_stays_on_the_grid(pool: str, tmp_path: Path) -> None:
    period, count = 0.05, 12
    out = tmp_path / "rec.jsonl"
    # The 3rd iteration overruns by 3.5 periods: when it returns, at least the next two ticks
    # are overdue (it started no earlier than its own tick was due).
    rec = recorder(out, slowCall=3, slowSeconds=3.5 * period)
    doc = workflow(pool, interval(periodSeconds=period, count=count, overrun="skip"), [rec])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    records = read_records(out)
    ticks = [r["payload"] for r in records]
    missed = missed_ticks(status)
    assert ticks == sorted(set(ticks)), "tick numbers must strictly increase"
    assert all(0 <= t < count for t in ticks)
    assert ticks[3] - ticks[2] - 1 >= 2, f"no ticks skipped after the overrun: {ticks}"
    # Every tick of the schedule was either produced or counted as missed, once. (A loaded
    # machine may add stalls of its own: they are counted the same way.)
    assert missed == count - len(ticks) == len(set(range(count)) - set(ticks))
    assert missed >= 2
    assert status.iterations == len(ticks)
    assert [r["iteration"] for r in records] == list(range(1, len(ticks) + 1))
    # The last tick is never skipped: nothing later is due when it is.
    assert ticks[-1] == count - 1
    assert_on_grid(out, period)


@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_skip_never_goes_past_count(pool: str, tmp_path: Path) -> None:
    """An overrun near the end must not produce tick numbers beyond the schedule."""
    period, count = 0.05, 4
    out = tmp_path / "rec.jsonl"
    rec = recorder(out, slowCall=3, slowSeconds=3.5 * period)
    doc = workflow(pool, interval(periodSeconds=period, count=count, overrun="skip"), [rec])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    ticks = [r["payload"] for r in read_records(out)]
    assert all(0 <= t < count for t in ticks), ticks
    assert status.iterations + missed_ticks(status) == count
    # The last tick is overdue but no later tick is: it is produced (late), not dropped.
    assert ticks[-1] == count - 1


@pytest.mark.parametrize("pool", POOLS)
def test_catch_up_runs_every_tick(pool: str, tmp_path: Path) -> None:
    period, count = 0.05, 10
    out = tmp_path / "rec.jsonl"
    rec = recorder(out, slowCall=3, slowSeconds=3.5 * period)
    doc = workflow(pool, interval(periodSeconds=period, count=count, overrun="catchUp"), [rec])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    records = read_records(out)
    assert [r["payload"] for r in records] == list(range(count))
    assert [r["iteration"] for r in records] == list(range(1, count + 1))
    assert missed_ticks(status) == 0
    assert status.iterations == count
    # The three ticks due during the slow call were produced late, and say by how much: the
    # first of them 2.5 periods, the others less (what the console shows as lateness).
    counters = status.node("tick").counters
    assert counters.get("lateTicks", 0) >= 3, counters
    assert counters.get("lateMicroseconds", 0) >= 2.5 * period * 1e6, counters
    # The overdue ticks ran back to back, then the grid resumed.
    assert_on_grid(out, period)


@pytest.mark.parametrize("pool", POOLS)
def test_pause_and_stop_take_effect_during_a_long_wait(pool: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    doc = workflow(pool, interval(periodSeconds=30), [recorder(out)])
    with running(doc) as orch:
        handle = orch.loop("main")
        assert handle.wait_for(lambda s: s.iterations >= 1, PROMPT)  # tick 0 is immediate
        # The producer now waits 30 s for tick 1; a pause must not wait for it.
        started = time.monotonic()
        handle.pause()
        assert handle.wait_for_state(LoopState.PAUSED, timeout=PROMPT)
        assert time.monotonic() - started < 5.0
        handle.resume()
        assert handle.wait_for_state(LoopState.RUNNING, timeout=PROMPT)
        # Stop likewise, while the producer is waiting again.
        started = time.monotonic()
        final = orch.stop(timeout=PROMPT)
        assert time.monotonic() - started < 5.0
    status = final.loop("main")
    assert status.state is LoopState.STOPPED
    assert status.iterations == 1
    assert [r["payload"] for r in read_records(out)] == [0]


@pytest.mark.parametrize("pool", POOLS)
def test_stop_takes_effect_during_a_long_wait(pool: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    doc = workflow(pool, interval(periodSeconds=30), [recorder(out)])
    with running(doc) as orch:
        handle = orch.loop("main")
        assert handle.wait_for(lambda s: s.iterations >= 1, PROMPT)
        started = time.monotonic()
        final = orch.stop(timeout=PROMPT)
        assert time.monotonic() - started < 5.0
    assert final.loop("main").state is LoopState.STOPPED


@pytest.mark.parametrize("overrun", ["skip", "catchUp"])
@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_a_pause_freezes_the_schedule(pool: str, overrun: str, tmp_path: Path) -> None:
    """Ticks that fall in a pause are neither counted as missed nor caught up in a burst."""
    period, count, pause = 0.05, 14, 0.5  # the pause lasts ten periods
    out = tmp_path / "rec.jsonl"
    doc = workflow(
        pool, interval(periodSeconds=period, count=count, overrun=overrun), [recorder(out)]
    )
    with running(doc) as orch:
        handle = orch.loop("main")
        assert handle.wait_for(lambda s: s.iterations >= 3, PROMPT)
        # Pause mid-period, while the producer waits for its next tick (the chain takes a few
        # microseconds; the wait is the rest of the period).
        last = read_records(out)[-1]["t"]
        time.sleep(max(0.0, last + period / 2 - time.monotonic()))
        handle.pause()
        assert handle.wait_for_state(LoopState.PAUSED, timeout=PROMPT)
        before = len(read_records(out))
        time.sleep(pause)
        resumed_at = time.monotonic()
        handle.resume()
        assert orch.wait(PROMPT)
        status = handle.status()
    records = read_records(out)
    ticks = [r["payload"] for r in records]
    missed = missed_ticks(status)
    assert status.iterations + missed == count
    if overrun == "catchUp":
        assert ticks == list(range(count))
    else:
        # Without the freeze, the ten paused periods would count as missed ticks. (A loaded
        # machine may stall past a tick or two on its own.)
        assert missed < (pause / period) / 2, ticks
    # No burst: the ticks after the pause keep to the period, counted from the resume. One
    # period of slack: on a loaded machine the pause may be taken only after the next tick was
    # due, and that tick (caught up at the resume) starts the grid a period early. A burst of
    # the ten paused ticks would be nine periods short.
    after = len(records) - before
    assert after >= 2
    assert records[-1]["t"] - resumed_at >= (ticks[-1] - ticks[before] - 1) * period


@pytest.mark.parametrize("pool", POOLS)
def test_a_pause_that_lands_while_the_chain_runs_also_freezes_the_schedule(
    pool: str, tmp_path: Path
) -> None:
    """The pause takes effect at the boundary after a busy chain: the producer learns of the
    paused time from its context and shifts its grid, so only the overrun counts as missed."""
    period, overrun_s, pause = 0.05, 0.3, 1.0  # overrun: 6 periods; pause: 20 periods
    out = tmp_path / "rec.jsonl"
    doc = workflow(
        pool,
        interval(periodSeconds=period, count=40),
        [recorder(out, slowCall=3, slowSeconds=overrun_s)],
    )
    with running(doc) as orch:
        handle = orch.loop("main")
        assert handle.wait_for(
            lambda _s: len([r for r in read_records(out) if r["event"] == "call"]) >= 3, PROMPT
        )
        handle.pause()  # the third call is still blocking: the pause lands after it
        assert handle.wait_for_state(LoopState.PAUSED, timeout=PROMPT)
        time.sleep(pause)
        handle.resume()
        assert orch.wait(PROMPT)
        status = handle.status()
    missed = missed_ticks(status)
    assert status.iterations + missed == 40
    assert missed <= overrun_s / period + 2, missed  # 26 or so if the pause counted
