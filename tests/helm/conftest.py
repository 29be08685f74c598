"""Fixtures for the chart tests: the helm binary and a renderer of the chart into Python objects."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.k8s import binaries

CHART = Path(__file__).resolve().parents[2] / "helm" / "ostinato"
RELEASE = "rel"
NAMESPACE = "ops"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]
RenderError = Callable[..., str]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary (helper A's cache, or fetched once); the tests skip when it cannot be had."""
    try:
        return binaries.ensure(["helm"])["helm"]
    except binaries.Unavailable as exc:
        pytest.skip(f"helm unavailable: {exc}")


def _template(
    helm: Path, tmp_path: Path, values: dict[str, Any] | None, extra: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    if values is not None:
        path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["--values", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def render(helm: Path, tmp_path: Path) -> Render:
    """`helm template` of the chart with the given values: the rendered objects, in order."""

    def run(values: dict[str, Any] | None = None, *extra: str) -> list[Manifest]:
        result = _template(helm, tmp_path, values, extra)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


@pytest.fixture
def render_error(helm: Path, tmp_path: Path) -> RenderError:
    """`helm template` that must fail: its error output."""

    def run(values: dict[str, Any] | None = None, *extra: str) -> str:
        result = _template(helm, tmp_path, values, extra)
        assert result.returncode != 0, f"helm template accepted {values}:\n{result.stdout}"
        return result.stderr

    return run
