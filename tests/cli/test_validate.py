"""`ostinato validate` and `ostinato --version` as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

import ostinato

REPO = Path(__file__).resolve().parents[2]


def ostinato_cmd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ostinato", *(str(a) for a in args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_version() -> None:
    result = ostinato_cmd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ostinato {ostinato.__version__}"


def test_validate_accepts_the_demo_and_names_its_loops() -> None:
    result = ostinato_cmd("validate", "examples/demo.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "examples/demo.yaml: ok: workflow 'demo', 3 loop(s): "
        "sensor [thread], counter [asyncio], worker [process]"
    )


def test_validate_reports_every_bad_file_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    document = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "bad"},
        "spec": {
            "loops": [
                {
                    "name": "one",
                    "producer": {"name": "tick", "class": "IntervalProducer", "config": {}},
                }
            ]
        },
    }
    bad.write_text(yaml.safe_dump(document), encoding="utf-8")

    result = ostinato_cmd("validate", bad, "examples/demo.yaml", tmp_path / "missing.yaml")

    assert result.returncode == 1
    assert "spec.loops[0].producer.config.periodSeconds: required field is missing" in (
        result.stderr
    )
    assert "missing.yaml" in result.stderr
    assert "examples/demo.yaml: ok" in result.stdout  # the good file is still checked
