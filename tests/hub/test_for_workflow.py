"""Hub.for_workflow: the one place a workflow's hub is built, for `ostinato run` and
`ostinato hub` alike (its queues and readers, its durable store, when a consumer is lost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ostinato
from ostinato._messaging._hub import Hub


def document(durable: bool) -> dict[str, Any]:
    return {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "built"},
        "spec": {
            "queues": [{"name": "jobs", "mode": "broadcast", "durable": durable}],
            "loops": [
                {
                    "name": "gen",
                    "heartbeatSeconds": 4,
                    "producer": {"name": "count", "class": "CounterProducer"},
                    "nodes": [{"name": "put", "kind": "blocking", "queue": {"write": "jobs"}}],
                },
                *(
                    {
                        "name": name,
                        "producer": {"name": "jobs", "queue": {"read": "jobs"}},
                    }
                    for name in ("left", "right")
                ),
            ],
        },
    }


def test_a_workflow_hub_has_its_queues_readers_and_silence() -> None:
    hub = Hub.for_workflow(ostinato.load_workflow(document(durable=False)))
    try:
        assert set(hub.queues) == {"jobs"}
        assert set(hub.queues["jobs"].groups) == {"left", "right"}  # broadcast: a group each
        assert hub.lost_after == 12.0  # three of the slowest heartbeats
        assert hub.store is None
    finally:
        hub.close()


def test_its_durable_store_is_opened_in_the_state_dir_and_closed_with_it(tmp_path: Path) -> None:
    hub = Hub.for_workflow(ostinato.load_workflow(document(durable=True)), state_dir=tmp_path)
    store = hub.store
    try:
        assert store is not None
        assert (tmp_path / "queues.db").exists()
    finally:
        hub.close()
    assert store._closed  # type: ignore[attr-defined]
