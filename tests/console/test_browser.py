"""The console in a real browser (headless Chromium): the graph of a running workflow, the
token that unlocks its controls, a pause seen in the page and in /status, a failing node, the
confirmation of a stop, a narrow window; a screenshot of each state (conftest.ARTIFACTS)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import WAIT_SECONDS, Run
from .support import all_of, css, open_url, text, wait
from .workflow import names

pytestmark = pytest.mark.timeout(300)

RED = "rgba(207, 34, 46, 1)"  # --failing in console.css, as the browser computes it


def _status(run: Run) -> dict[str, Any]:
    with urllib.request.urlopen(run.base + "/status", timeout=WAIT_SECONDS) as reply:
        return dict(json.loads(reply.read()))


def _button(driver: Any, label: str) -> Any:
    return css(driver, f'button[aria-label="{label}"]')


def _unlock(driver: Any, token: str) -> None:
    field = css(driver, "#token")
    field.clear()
    field.send_keys(token)
    css(driver, "#token-save").click()


def test_the_graph_has_every_loop_node_and_queue(browser: Any, run: Run, artifacts: Path) -> None:
    open_url(browser, run.url)
    loops, nodes, queues = names(run.doc)
    for loop in loops:
        assert css(browser, f"#loop-{loop}").get_attribute("aria-label") == f"loop {loop}"
    for loop, node in nodes:
        assert css(browser, f"#node-{loop}-{node}").get_attribute("data-node") == node
    for queue in queues:
        assert css(browser, f"#queue-{queue}").get_attribute("aria-label") == f"queue {queue}"
    # Queues are edges from the writer node to the reader loop; broadcast and work differ.
    wait(browser, lambda d: len(all_of(d, "path.edge")) == 2, "both queues' edges")
    assert all_of(browser, "path.edge.broadcast")[0].get_attribute("data-queue") == "events"
    assert all_of(browser, "path.edge.work")[0].get_attribute("data-queue") == "jobs"
    assert "nonBlocking" in str(css(browser, "#node-source-handoff").get_attribute("class"))
    wait(browser, lambda d: text(d, "#loop-source [data-role=state]") == "running", "running")
    assert len(all_of(browser, "#loop-workers .replica")) == 2  # its two replicas
    wait(browser, lambda d: "it/s" in text(d, "#loop-source [data-role=rate]"), "a rate")
    wait(browser, lambda d: all_of(d, "#loop-source .chart polyline"), "a chart of iterations/s")
    browser.save_screenshot(str(artifacts / "console-running.png"))
    # No script error and no request the page's own policy (Content-Security-Policy) refused.
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_read_only_until_the_token_then_pause_shows_in_the_page_and_in_status(
    browser: Any, run: Run, artifacts: Path
) -> None:
    open_url(browser, run.url)
    pause = _button(browser, "Pause loop watcher")
    assert not pause.is_enabled(), "controls must be read-only without a token"
    assert not _button(browser, "Stop all loops").is_enabled()

    _unlock(browser, "not-the-token")
    wait(browser, lambda d: _button(d, "Pause loop watcher").is_enabled(), "controls unlocked")
    _button(browser, "Pause loop watcher").click()
    wait(browser, lambda d: "401" in text(d, "#control-message"), "the refusal (401)")
    assert _status(run)["loops"][1]["desiredState"] == "running"

    _unlock(browser, run.token)
    assert run.token not in browser.page_source  # kept in sessionStorage, not in the page
    _button(browser, "Pause loop watcher").click()
    wait(
        browser,
        lambda d: text(d, "#loop-watcher [data-role=state]") == "paused",
        "watcher paused in the page",
    )
    watcher = next(lp for lp in _status(run)["loops"] if lp["name"] == "watcher")
    assert (watcher["state"], watcher["desiredState"]) == ("paused", "paused")
    # Its rate spans the last 3 s: a paused loop shows 0 within a few seconds.
    wait(
        browser,
        lambda d: text(d, "#loop-watcher [data-role=rate]") == "0.0 it/s",
        "watcher's rate down to 0",
    )
    browser.save_screenshot(str(artifacts / "console-paused.png"))

    _button(browser, "Resume loop watcher").click()
    wait(
        browser,
        lambda d: text(d, "#loop-watcher [data-role=state]") == "running",
        "watcher running again",
    )


def test_a_failing_node_turns_red_with_its_message(browser: Any, run: Run, artifacts: Path) -> None:
    open_url(browser, run.url)
    check = "#node-source-check"
    assert css(browser, check).get_attribute("data-health") == "healthy"
    run.tripwire.touch()
    try:
        wait(
            browser,
            lambda d: css(d, check).get_attribute("data-health") == "failing",
            "the check node failing",
        )
        wait(
            browser,
            lambda d: "tripwire tripwire is set" in text(d, f"{check} .last-error"),
            "its error message",
        )
        assert css(browser, check).value_of_css_property("border-left-color") == RED
        assert text(browser, f"{check} .health") == "failing"
        browser.save_screenshot(str(artifacts / "console-failing.png"))
    finally:
        run.tripwire.unlink()
    wait(
        browser,
        lambda d: css(d, check).get_attribute("data-health") == "healthy",
        "the check node healthy again",
    )


def test_a_narrow_window_stacks_the_loops_without_sideways_scrolling(
    browser: Any, run: Run, artifacts: Path
) -> None:
    browser.set_window_size(480, 1000)
    try:
        open_url(browser, run.url)
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width + 1, f"page is {scroll}px wide in a {width}px window"
        boxes = [css(browser, f"#loop-{name}").rect for name in ("source", "watcher")]
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"], "loops should stack"
        browser.save_screenshot(str(artifacts / "console-narrow.png"))
    finally:
        browser.set_window_size(1280, 720)


def test_stop_asks_first_and_cancel_changes_nothing(browser: Any, run: Run) -> None:
    open_url(browser, run.url)
    _unlock(browser, run.token)
    wait(browser, lambda d: _button(d, "Stop loop workers").is_enabled(), "controls unlocked")
    _button(browser, "Stop loop workers").click()
    wait(browser, lambda d: css(d, "#confirm").get_attribute("open") is not None, "the dialog")
    assert "Stop loop workers?" in text(browser, "#confirm-text")
    css(browser, "#confirm-cancel").click()
    wait(browser, lambda d: css(d, "#confirm").get_attribute("open") is None, "dialog closed")
    assert {lp["desiredState"] for lp in _status(run)["loops"] if lp["name"] == "workers"} == {
        "running"
    }
    _button(browser, "Stop loop workers").click()
    wait(browser, lambda d: css(d, "#confirm").get_attribute("open") is not None, "the dialog")
    css(browser, "#confirm-ok").click()
    wait(
        browser,
        lambda d: text(d, "#loop-workers [data-role=state]") == "stopped",
        "workers stopped in the page",
    )
    assert {lp["state"] for lp in _status(run)["loops"] if lp["name"] == "workers"} == {"stopped"}
