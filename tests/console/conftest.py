"""What the browser tests share: `ostinato run FILE --ui` of the console's test workflow in a
process of its own, and headless Chromium (Debian's chromium and chromium-driver, `make
chromium`) driven by selenium, or a one-line skip where there is none."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .workflow import document

REPO = Path(__file__).resolve().parents[2]
#: Screenshots of each state: git-ignored, kept after the run (OSTINATO_CONSOLE_ARTIFACTS moves
#: them); docs/img/console-*.png are copies of them.
ARTIFACTS = Path(os.environ.get("OSTINATO_CONSOLE_ARTIFACTS", REPO / "artifacts" / "console"))
#: Every wait in a browser test: generous, for a loaded two-core machine.
WAIT_SECONDS = 60.0
TOKEN = "console-browser-token-0123456789abcdefABCDEF"
_CONSOLE_LINE = re.compile(r"^console: (http://\S+/console/)", re.M)


@dataclass
class Run:
    """The running workflow: its console's URL, its token and tripwire files, its document."""

    url: str
    token: str
    tripwire: Path
    doc: dict[str, Any]
    output: list[str]

    @property
    def base(self) -> str:
        return self.url.removesuffix("/console/")


def _collect(stream: Any, sink: list[str], cond: threading.Condition) -> None:
    for line in stream:
        with cond:
            sink.append(line)
            cond.notify_all()
    with cond:
        sink.append("")  # the end
        cond.notify_all()


@contextlib.contextmanager
def ostinato(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """``python -m ostinato ARGS`` (with --ui) until it prints its console's URL: yields the
    URL and the output so far; interrupted (SIGINT) and waited for at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ostinato", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), **(env or {})},
    )
    output: list[str] = []
    cond = threading.Condition()
    threading.Thread(target=_collect, args=(proc.stdout, output, cond), daemon=True).start()

    def found() -> re.Match[str] | None:
        return _CONSOLE_LINE.search("".join(output))

    try:
        with cond:
            cond.wait_for(lambda: found() is not None or "" in output, WAIT_SECONDS)
            match = found()
        if match is None:
            pytest.fail(f"ostinato {args[0]} --ui printed no console URL:\n" + "".join(output))
        yield match[1], output
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """``ostinato run --ui`` of the test workflow, until its console's URL is printed."""
    folder = tmp_path_factory.mktemp("console")
    tripwire = folder / "tripwire"
    doc = document(tripwire)
    path = folder / "console-demo.json"
    path.write_text(json.dumps(doc))
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    args = ("run", str(path), "--ui", "--status-every", "0", "--live", "never")
    with ostinato(*args, "--control-token-file", str(token_file)) as (url, output):
        yield Run(url, TOKEN, tripwire, doc, output)


def _chromium() -> Any:
    """A headless Chromium at 1280x720, or a skip saying in one line why there is none."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no chromium or chromedriver: `make chromium` installs them (root, Debian)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces to sandbox with
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,720",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's errors
    try:
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    except WebDriverException as exc:
        pytest.skip(f"chromium does not start here: {str(exc.msg).splitlines()[0]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = _chromium()
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
