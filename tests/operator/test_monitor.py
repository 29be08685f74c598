"""The status loop without a cluster: when it writes, what it says about a stale status, and
the control token it posts desired states with."""

from __future__ import annotations

import datetime
from typing import Any

from ostinato_operator import _monitor as _monitor_module
from ostinato_operator._hub_client import HubError
from ostinato_operator._monitor import Monitor, Tracked
from ostinato_operator._settings import OperatorSettings
from ostinato_operator._status_models import Phase, WorkflowResourceStatus

from .support import as_object, example

TOKEN = "counter-control-token-0123456789"


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, bool]] = []
        #: The workflow's Secret: its control token (None: no such Secret).
        self.token: str | None = TOKEN
        self.secret_reads: list[tuple[str, str, str]] = []

    def secret_value(self, namespace: str, name: str, key: str) -> tuple[str | None, str] | None:
        self.secret_reads.append((namespace, name, key))
        return None if self.token is None else (self.token, "1")

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
    """post_control's stand-in: records (loop, state), or fails as an unreachable hub, or as a
    hub that wants another token."""

    def __init__(self, up: bool = True, token: str = TOKEN) -> None:
        self.up = up
        self.token = token
        self.tried: list[str | None] = []
        self.tokens: list[str] = []
        self.posts: list[tuple[str | None, str]] = []

    def __call__(
        self, url: str, loop: str | None, state: Any, timeout: float, *, token: str
    ) -> dict[str, Any]:
        self.tried.append(loop)
        self.tokens.append(token)
        if not self.up:
            raise HubError(f"{url}/control: connection refused")
        if token != self.token:
            raise HubError(f"{url}/control: HTTP 401: wrong bearer token", 401)
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


def test_the_control_token_is_read_once_from_the_secret_and_sent(monkeypatch: Any) -> None:
    monitor, kube, entry = _monitor()
    hub = FakeHub()
    monkeypatch.setattr(_monitor_module, "post_control", hub)
    body = entry.body
    monitor.track(body)
    _changed(monitor, body, "paused", "2")
    _changed(monitor, body, "running", "3")
    assert hub.posts == [("writer", "running"), ("reader", "paused"), ("reader", "running")]
    assert set(hub.tokens) == {TOKEN}
    name = body["metadata"]["name"]
    assert kube.secret_reads == [("ns1", f"{name}-curve", "OSTINATO_CONTROL_TOKEN")]
    tracked = monitor.get("ns1", name)
    assert tracked is not None
    assert TOKEN not in repr(tracked)


def test_a_refused_token_is_read_again_from_the_secret(monkeypatch: Any) -> None:
    """The Secret was made again (deleted by someone): the hub that started since has the new
    token, the operator the old one until the hub refuses it."""
    monitor, kube, entry = _monitor()
    hub = FakeHub()
    monkeypatch.setattr(_monitor_module, "post_control", hub)
    monitor.track(entry.body)
    _changed(monitor, entry.body, "paused", "2")
    assert len(kube.secret_reads) == 1
    hub.token = kube.token = "the-new-control-token-0123456789"
    _changed(monitor, entry.body, "running", "3")
    assert hub.tried[-1] == "reader"
    assert hub.posts == [("writer", "running"), ("reader", "paused")]  # refused
    assert len(kube.secret_reads) == 1  # the token is dropped, read again at the next post
    _changed(monitor, entry.body, "running", "4")
    assert len(kube.secret_reads) == 2
    assert hub.posts[-1] == ("reader", "running")
    assert hub.tokens[-1] == "the-new-control-token-0123456789"


def test_without_a_token_nothing_is_posted_and_it_is_said_once(
    monkeypatch: Any, caplog: Any
) -> None:
    monitor, kube, entry = _monitor()
    kube.token = None
    hub = FakeHub()
    monkeypatch.setattr(_monitor_module, "post_control", hub)
    monitor.track(entry.body)
    _changed(monitor, entry.body, "paused", "2")
    _changed(monitor, entry.body, "running", "3")
    assert hub.tried == []
    said = [r for r in caplog.records if "has no OSTINATO_CONTROL_TOKEN" in r.getMessage()]
    assert len(said) == 1
    kube.token = TOKEN  # the reconcile added it
    _changed(monitor, entry.body, "running", "4")
    assert hub.posts == [("writer", "running"), ("reader", "running")]
