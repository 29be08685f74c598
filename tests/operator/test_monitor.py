"""The status loop without a cluster: when it writes, and what it says about a stale status."""

from __future__ import annotations

import datetime
from typing import Any

from ostinato_operator import _monitor as _monitor_module
from ostinato_operator._hub_client import HubError
from ostinato_operator._monitor import Monitor, Tracked
from ostinato_operator._settings import OperatorSettings
from ostinato_operator._status_models import Phase, WorkflowResourceStatus

from .support import as_object, example


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, bool]] = []

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.patches.append(status)

    def event(self, owner: Any, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, warning))


def _monitor(**settings: Any) -> tuple[Monitor, FakeKube, Tracked]:
    kube = FakeKube()
    monitor = Monitor(kube, OperatorSettings(**settings))  # type: ignore[arg-type]
    return monitor, kube, Tracked(body=as_object(example("k8s-counter.yaml")))


def test_an_unchanged_status_is_rewritten_once_it_is_old() -> None:
    # Reproduces the issue: an unchanged status was never written again, so its lastUpdateTime
    # could not tell a quiet workflow from an operator that is gone.
    monitor, kube, entry = _monitor(status_refresh_seconds=60)
    status = WorkflowResourceStatus(phase=Phase.RUNNING, last_update_time="2026-01-01T00:00:00Z")
    monitor._write(entry, status)
    monitor._write(entry, status.model_copy(update={"last_update_time": "2026-01-01T00:00:05Z"}))
    assert len(kube.patches) == 1
    entry.written_at -= 61  # a minute later
    monitor._write(entry, status.model_copy(update={"last_update_time": "2026-01-01T00:01:01Z"}))
    assert [p["lastUpdateTime"] for p in kube.patches] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:01:01Z",
    ]


def _ago(seconds: float) -> str:
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_status_left_stale_is_said_so_when_an_operator_comes_back() -> None:
    monitor, kube, entry = _monitor(status_refresh_seconds=60, status_interval_seconds=5)
    monitor._stale_event(entry, WorkflowResourceStatus(last_update_time=_ago(3600)))
    ((reason, message, warning),) = kube.events
    assert (reason, warning) == ("StatusStale", True)
    assert "no operator kept it up to date" in message
    kube.events.clear()
    monitor._stale_event(entry, WorkflowResourceStatus(last_update_time=_ago(30)))
    monitor._stale_event(entry, WorkflowResourceStatus())
    assert kube.events == []


class FakeHub:
    """post_control's stand-in: records (loop, state), or fails as an unreachable hub."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.tried: list[str | None] = []
        self.posts: list[tuple[str | None, str]] = []

    def __call__(self, url: str, loop: str | None, state: Any, timeout: float) -> dict[str, Any]:
        self.tried.append(loop)
        if not self.up:
            raise HubError(f"{url}/control: connection refused")
        self.posts.append((loop, state.value))
        return {}


def _changed(monitor: Monitor, body: dict[str, Any], reader_state: str, version: str) -> None:
    body["spec"]["loops"][1]["state"] = reader_state
    body["metadata"]["resourceVersion"] = version
    monitor.track(body)
    monitor.post_changed_states(body)


def test_a_changed_state_is_posted_at_once_and_only_once(monkeypatch: Any) -> None:
    monitor, _kube, entry = _monitor()
    hub = FakeHub()
    monkeypatch.setattr(_monitor_module, "post_control", hub)
    body = entry.body
    monitor.track(body)
    # Nothing posted yet (the hub was never reached): every loop's state goes, once.
    _changed(monitor, body, "paused", "2")
    assert hub.posts == [("writer", "running"), ("reader", "paused")]
    _changed(monitor, body, "paused", "3")  # another field changed: nothing to post
    assert len(hub.posts) == 2
    _changed(monitor, body, "running", "4")
    assert hub.posts[2:] == [("reader", "running")]


def test_an_unreachable_hub_is_tried_once_and_left_to_the_rounds(monkeypatch: Any) -> None:
    monitor, _kube, entry = _monitor()
    hub = FakeHub(up=False)
    monkeypatch.setattr(_monitor_module, "post_control", hub)
    monitor.track(entry.body)
    _changed(monitor, entry.body, "paused", "2")
    assert hub.tried == ["writer"]  # one timeout at most, not one per loop
    tracked = monitor.get("ns1", entry.body["metadata"]["name"])
    assert tracked is not None
    assert tracked.posted == {}  # so the next round posts them
    hub.up = True
    _changed(monitor, entry.body, "paused", "3")
    assert hub.posts == [("writer", "running"), ("reader", "paused")]
