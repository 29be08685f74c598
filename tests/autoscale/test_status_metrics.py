"""An autoscaled loop's desired and current replicas in the status table and on /metrics."""

from __future__ import annotations

from ostinato import WorkflowStatus
from ostinato._observe._metrics import families
from ostinato._observe._tables import format_table


def status() -> WorkflowStatus:
    return WorkflowStatus.model_validate(
        {
            "workflow": "wf",
            "loops": [],
            "autoscale": [
                {"loop": "work", "desiredReplicas": 3, "currentReplicas": 2, "backlog": 250}
            ],
        }
    )


def test_metrics_carry_desired_and_current_replicas() -> None:
    got = {
        (f.name, tuple(s.labels.items())): s.value
        for f in families(status(), "test")
        for s in f.samples
    }
    labels = (("workflow", "wf"), ("loop", "work"))
    assert got[("ostinato_loop_desired_replicas", labels)] == 3
    assert got[("ostinato_loop_current_replicas", labels)] == 2


def test_the_table_shows_them() -> None:
    lines = format_table(status()).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("AUTOSCALED LOOP"))
    assert lines[header + 1].split() == ["work", "3", "2", "250"]


def test_a_hub_that_does_not_decide_shows_no_desired_count() -> None:
    status = WorkflowStatus.model_validate(
        {
            "workflow": "wf",
            "loops": [],
            "autoscale": [{"loop": "work", "desiredReplicas": None, "currentReplicas": 1}],
        }
    )
    names = {s.name for f in families(status, "test") for s in f.samples}
    assert "ostinato_loop_current_replicas" in names
    assert "ostinato_loop_desired_replicas" not in names
    lines = format_table(status).splitlines()
    assert lines[-1].split() == ["work", "-", "1", "0"]
