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
from .workflow import names

pytestmark = pytest.mark.timeout(300)

RED = "rgba(207, 34, 46, 1)"  # --failing in console.css, as the browser computes it


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(
        condition, message=f"waited {WAIT_SECONDS:g}s for {what}"
    )


def _css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _open(driver: Any, run: Run) -> None:
    """Load the console and wait until it has shown figures at least twice."""
    driver.get(run.url)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.updated"), "figures")
    first = driver.execute_script("return document.body.dataset.updated")
    _wait(
        driver,
        lambda d: d.execute_script("return document.body.dataset.updated") != first,
        "a second update",
    )


def _text(driver: Any, selector: str) -> str:
    return str(_css(driver, selector).text)


def _status(run: Run) -> dict[str, Any]:
    with urllib.request.urlopen(run.base + "/status", timeout=WAIT_SECONDS) as reply:
        return dict(json.loads(reply.read()))


def _button(driver: Any, label: str) -> Any:
    return _css(driver, f'button[aria-label="{label}"]')


def _unlock(driver: Any, token: str) -> None:
    field = _css(driver, "#token")
    field.clear()
    field.send_keys(token)
    _css(driver, "#token-save").click()


def test_the_graph_has_every_loop_node_and_queue(browser: Any, run: Run, artifacts: Path) -> None:
    _open(browser, run)
    loops, nodes, queues = names(run.doc)
    for loop in loops:
        assert _css(browser, f"#loop-{loop}").get_attribute("aria-label") == f"loop {loop}"
    for loop, node in nodes:
        assert _css(browser, f"#node-{loop}-{node}").get_attribute("data-node") == node
    for queue in queues:
        assert _css(browser, f"#queue-{queue}").get_attribute("aria-label") == f"queue {queue}"
    # Queues are edges from the writer node to the reader loop; broadcast and work differ.
    _wait(browser, lambda d: len(_all(d, "path.edge")) == 2, "both queues' edges")
    assert _all(browser, "path.edge.broadcast")[0].get_attribute("data-queue") == "events"
    assert _all(browser, "path.edge.work")[0].get_attribute("data-queue") == "jobs"
    assert "nonBlocking" in str(_css(browser, "#node-source-handoff").get_attribute("class"))
    _wait(browser, lambda d: _text(d, "#loop-source [data-role=state]") == "running", "running")
    assert len(_all(browser, "#loop-workers .replica")) == 2  # its two replicas
    _wait(browser, lambda d: "it/s" in _text(d, "#loop-source [data-role=rate]"), "a rate")
    _wait(browser, lambda d: _all(d, "#loop-source .chart polyline"), "a chart of iterations/s")
    browser.save_screenshot(str(artifacts / "console-running.png"))


def test_read_only_until_the_token_then_pause_shows_in_the_page_and_in_status(
    browser: Any, run: Run, artifacts: Path
) -> None:
    _open(browser, run)
    pause = _button(browser, "Pause loop watcher")
    assert not pause.is_enabled(), "controls must be read-only without a token"
    assert not _button(browser, "Stop all loops").is_enabled()

    _unlock(browser, "not-the-token")
    _wait(browser, lambda d: _button(d, "Pause loop watcher").is_enabled(), "controls unlocked")
    _button(browser, "Pause loop watcher").click()
    _wait(browser, lambda d: "401" in _text(d, "#control-message"), "the refusal (401)")
    assert _status(run)["loops"][1]["desiredState"] == "running"

    _unlock(browser, run.token)
    assert run.token not in browser.page_source  # kept in sessionStorage, not in the page
    _button(browser, "Pause loop watcher").click()
    _wait(
        browser,
        lambda d: _text(d, "#loop-watcher [data-role=state]") == "paused",
        "watcher paused in the page",
    )
    watcher = next(lp for lp in _status(run)["loops"] if lp["name"] == "watcher")
    assert (watcher["state"], watcher["desiredState"]) == ("paused", "paused")
    browser.save_screenshot(str(artifacts / "console-paused.png"))

    _button(browser, "Resume loop watcher").click()
    _wait(
        browser,
        lambda d: _text(d, "#loop-watcher [data-role=state]") == "running",
        "watcher running again",
    )


def test_a_failing_node_turns_red_with_its_message(browser: Any, run: Run, artifacts: Path) -> None:
    _open(browser, run)
    check = "#node-source-check"
    assert _css(browser, check).get_attribute("data-health") == "healthy"
    run.tripwire.touch()
    try:
        _wait(
            browser,
            lambda d: _css(d, check).get_attribute("data-health") == "failing",
            "the check node failing",
        )
        _wait(
            browser,
            lambda d: "tripwire tripwire is set" in _text(d, f"{check} .last-error"),
            "its error message",
        )
        assert _css(browser, check).value_of_css_property("border-left-color") == RED
        assert _text(browser, f"{check} .health") == "failing"
        browser.save_screenshot(str(artifacts / "console-failing.png"))
    finally:
        run.tripwire.unlink()
    _wait(
        browser,
        lambda d: _css(d, check).get_attribute("data-health") == "healthy",
        "the check node healthy again",
    )


def test_a_narrow_window_stacks_the_loops_without_sideways_scrolling(
    browser: Any, run: Run, artifacts: Path
) -> None:
    browser.set_window_size(480, 1000)
    try:
        _open(browser, run)
        width = browser.execute_script("return document.documentElement.clientWidth")
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width + 1, f"page is {scroll}px wide in a {width}px window"
        boxes = [_css(browser, f"#loop-{name}").rect for name in ("source", "watcher")]
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"], "loops should stack"
        browser.save_screenshot(str(artifacts / "console-narrow.png"))
    finally:
        browser.set_window_size(1280, 720)


def test_stop_asks_first_and_cancel_changes_nothing(browser: Any, run: Run) -> None:
    _open(browser, run)
    _unlock(browser, run.token)
    _wait(browser, lambda d: _button(d, "Stop loop workers").is_enabled(), "controls unlocked")
    _button(browser, "Stop loop workers").click()
    _wait(browser, lambda d: _css(d, "#confirm").get_attribute("open") is not None, "the dialog")
    assert "Stop loop workers?" in _text(browser, "#confirm-text")
    _css(browser, "#confirm-cancel").click()
    _wait(browser, lambda d: _css(d, "#confirm").get_attribute("open") is None, "dialog closed")
    assert {lp["desiredState"] for lp in _status(run)["loops"] if lp["name"] == "workers"} == {
        "running"
    }
    _button(browser, "Stop loop workers").click()
    _wait(browser, lambda d: _css(d, "#confirm").get_attribute("open") is not None, "the dialog")
    _css(browser, "#confirm-ok").click()
    _wait(
        browser,
        lambda d: _text(d, "#loop-workers [data-role=state]") == "stopped",
        "workers stopped in the page",
    )
    assert {lp["state"] for lp in _status(run)["loops"] if lp["name"] == "workers"} == {"stopped"}
