"""Selenium's waits and look-ups as the console's browser tests use them: every wait an
explicit WebDriverWait on a condition, with a generous timeout."""

from __future__ import annotations

from typing import Any

from .conftest import WAIT_SECONDS

__all__ = ["all_of", "css", "open_url", "text", "wait"]


def wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(
        condition, message=f"waited {WAIT_SECONDS:g}s for {what}"
    )


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_of(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def open_url(driver: Any, url: str) -> None:
    """Load the console and wait until it has shown figures at least twice."""
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.updated"), "figures")
    first = driver.execute_script("return document.body.dataset.updated")
    wait(
        driver,
        lambda d: d.execute_script("return document.body.dataset.updated") != first,
        "a second update",
    )


def text(driver: Any, selector: str) -> str:
    return str(css(driver, selector).text)
