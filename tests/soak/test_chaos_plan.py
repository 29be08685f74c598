"""The chaos plan: the same seed gives the same faults, spread as asked over the run."""

from __future__ import annotations

import itertools

import pytest

from soak.chaos import ChaosSettings, plan

pytestmark = pytest.mark.timeout(30)

TARGETS = ["soak-writer-0", "soak-writer-1", "soak-worker-0", "soak-worker-1", "soak-monitor-0"]


def thirty_minutes(seed: int) -> list:  # type: ignore[type-arg]
    return plan(ChaosSettings(seed=seed), 1800, TARGETS, ["delete", "force-delete"], "kill", "op")


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert thirty_minutes(7) == thirty_minutes(7)
    assert thirty_minutes(7) != thirty_minutes(8)


def test_a_thirty_minute_run_gets_loop_faults_every_30_to_60_s_two_hub_kills_one_operator() -> None:
    faults = thirty_minutes(1)
    kinds = [f.kind for f in faults]
    assert kinds.count("hub") == 2
    assert kinds.count("operator") == 1
    hub = [f.offset_seconds for f in faults if f.kind == "hub"]
    assert 500 < hub[0] < 700
    assert 1100 < hub[1] < 1300
    loops = [f for f in faults if f.kind == "loop"]
    assert {f.target for f in loops} <= set(TARGETS)
    assert len({f.target for f in loops}) == 5
    assert {f.how for f in loops} == {"delete", "force-delete"}
    assert all(30 <= f.offset_seconds <= 1740 for f in faults)  # quiet start and end
    gaps = [b.offset_seconds - a.offset_seconds for a, b in itertools.pairwise(loops)]
    # 30-60 s apart, plus at most one spacing shift where a hub or operator fault was near.
    assert min(gaps) >= 30
    assert max(gaps) <= 60 + 2 * 15
    assert 25 <= len(loops) <= 60
    others = [f.offset_seconds for f in faults if f.kind != "loop"]
    assert all(abs(f.offset_seconds - o) >= 15 for f in loops for o in others)


def test_a_short_run_keeps_the_shape() -> None:
    faults = plan(ChaosSettings(seed=1), 120, TARGETS, ["SIGKILL"], "SIGKILL", None)
    hub = [f.offset_seconds for f in faults if f.kind == "hub"]
    assert len(hub) == 2
    assert hub[1] - hub[0] > 20
    assert all(12 <= f.offset_seconds <= 96 for f in faults)
    assert not [f for f in faults if f.kind == "operator"]
