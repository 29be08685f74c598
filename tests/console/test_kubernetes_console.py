"""The console of a hub the operator runs (`ostinato hub --ui --ui-managed-by-operator`): no
controls and no token field, the spec's state and the `kubectl patch` that changes it; and the
hub's one-line refusals of --ui without what it needs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, WAIT_SECONDS, ostinato
from .support import all_of, css, open_url, text, wait
from .workflow import document

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workflow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub")
    path = folder / "console-demo.json"
    path.write_text(json.dumps(document(folder / "tripwire")))
    return path


@pytest.fixture(scope="module")
def hub_console(workflow_file: Path) -> Iterator[str]:
    args = ("hub", str(workflow_file), "--bind", f"tcp://127.0.0.1:{_free_port()}", "--insecure")
    args += ("--http-host", "127.0.0.1", "--http-port", "0", "--ui", "--ui-managed-by-operator")
    env = {"OSTINATO_CONTROL_TOKEN": "hub-console-token-0123456789abcdef"}
    with ostinato(*args, env=env) as (url, _output):
        yield url


def test_the_operators_hub_shows_the_spec_and_kubectl_patch_instead_of_controls(
    browser: Any, hub_console: str, artifacts: Path
) -> None:
    open_url(browser, hub_console)
    wait(browser, lambda d: css(d, "#kubernetes").is_displayed(), "the Kubernetes section")
    patch = text(browser, "#workflow-patch")
    assert patch.startswith("kubectl ostinato pause|resume|stop console-demo\n"), patch
    assert "kubectl patch owf console-demo --type=merge" in patch, patch
    assert '{"spec":{"state":"STATE"}}' in patch
    assert not css(browser, "#access").is_displayed()  # no token field
    assert not css(browser, "#workflow-controls").is_displayed()
    assert all_of(browser, ".loop button") == []  # no loop has controls
    assert '"path":"/spec/loops/1/state"' in text(browser, "#loop-watcher .patch")
    # No loop reports to this hub: each shows it is pending, and what its spec asks.
    wait(
        browser,
        lambda d: text(d, "#loop-source [data-role=desired]") == "spec: running",
        "the spec's state",
    )
    assert text(browser, "#loop-source [data-role=state]") == "pending"
    browser.save_screenshot(str(artifacts / "console-kubernetes.png"))


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (("--ui",), "ostinato hub: --ui needs --http-port"),
        (("--http-port", "0", "--ui-managed-by-operator"), "needs --ui"),
    ],
)
def test_the_hub_refuses_ui_flags_it_cannot_honour_in_one_line(
    workflow_file: Path, extra: tuple[str, ...], said: str
) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "ostinato", "hub", str(workflow_file), "--insecure"),
            *("--bind", "tcp://127.0.0.1:1", *extra),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert said in done.stderr
