"""`ostinato k8s`: the kubectl plugin's verbs, found by its entry point (the runtime imports
nothing of the operator), and one clear line where the operator package is not installed."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest

from ostinato._cli import main


def test_k8s_hands_over_to_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["k8s", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ostinato k8s ")
    for verb in ("get", "pause", "resume", "stop", "scale"):
        assert verb in out


@pytest.mark.parametrize("missing", ["no entry point", "no operator package"])
def test_without_the_operator_one_line_says_what_to_install(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        def load(self) -> Any:
            raise ModuleNotFoundError("No module named 'ostinato_operator'")

    found = [] if missing == "no entry point" else [Broken()]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: found)
    assert main(["k8s", "get"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ostinato k8s: the kubectl plugin is not installed")
    assert err.endswith("pip install 'ostinato[operator]'\n")
