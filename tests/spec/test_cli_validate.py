"""`ostinato validate FILE...` and `ostinato --version`, run as a user runs them."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import ostinato

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo.yaml"

VALID: dict[str, Any] = {
    "apiVersion": "ostinato.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "cli"},
    "spec": {
        "loops": [
            {
                "name": "main",
                "producer": {
                    "name": "tick",
                    "class": "IntervalProducer",
                    "config": {"periodSeconds": 1},
                },
                "nodes": [
                    {
                        "name": "work",
                        "kind": "blocking",
                        "class": "tests.spec.nodes:OnlyBlocking",
                        "config": {"scaleFactor": 2},
                    }
                ],
            }
        ]
    },
}


def ostinato_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "runtime"), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "ostinato", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def variant(**config: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    doc["spec"]["loops"][0]["producer"]["config"] = config
    return doc


def test_valid_demo_prints_ok() -> None:
    result = ostinato_cli("validate", "examples/demo.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "examples/demo.yaml: ok: workflow 'demo', 3 loop(s): "
        "sensor [thread], counter [asyncio], worker [process]\n"
    )
    assert result.stderr == ""


def test_valid_file_with_nodes_from_the_working_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "valid.yaml", VALID)
    result = ostinato_cli("validate", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: ok: workflow 'cli', 1 loop(s): main [thread]\n"


def test_invalid_file_exits_1_and_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "zero.yaml", variant(periodSeconds=0))
    result = ostinato_cli("validate", path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{path}: invalid workflow (1 error(s)):\n"
        "  spec.loops[0].producer.config.periodSeconds: must be > 0\n"
    )


def test_invalid_class_exits_1(tmp_path: Path) -> None:
    doc = copy.deepcopy(VALID)
    doc["spec"]["loops"][0]["nodes"][0]["class"] = "tests.spec.nodes:Nope"
    path = write(tmp_path, "class.yaml", doc)
    result = ostinato_cli("validate", path)
    assert result.returncode == 1
    assert (
        "  spec.loops[0].nodes[0].class: module 'tests.spec.nodes' has no attribute 'Nope'"
        in result.stderr
    )


def test_several_files_report_each(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", VALID)
    zero = write(tmp_path, "zero.yaml", variant(periodSeconds=0))
    typo = write(tmp_path, "typo.yaml", variant(periodSecond=1))
    result = ostinato_cli("validate", zero, DEMO, good, typo)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{DEMO}: ok: workflow 'demo', 3 loop(s): "
        "sensor [thread], counter [asyncio], worker [process]",
        f"{good}: ok: workflow 'cli', 1 loop(s): main [thread]",
    ]
    err = result.stderr
    assert f"{zero}: invalid workflow" in err
    assert "  spec.loops[0].producer.config.periodSeconds: must be > 0" in err
    assert f"{typo}: invalid workflow" in err
    assert "  spec.loops[0].producer.config.periodSecond: unknown field" in err
    assert err.index(str(zero)) < err.index(str(typo))


def test_several_valid_files_exit_0(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", VALID)
    two = write(tmp_path, "two.json", {**VALID, "metadata": {"name": "two"}})
    result = ostinato_cli("validate", one, two)
    assert result.returncode == 0, result.stderr
    assert [line.split(": ok: ")[0] for line in result.stdout.splitlines()] == [str(one), str(two)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"kind: [Workflow\n", "line 2, column 1: not valid YAML", id="yaml-syntax"),
        pytest.param(b"- 1\n", "the document must be a mapping, got a list", id="list"),
        pytest.param(b"\xff\xfe\x00", "not UTF-8 text", id="not-utf8"),
    ],
)
def test_unreadable_documents_exit_1_without_traceback(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = ostinato_cli("validate", path)
    assert result.returncode == 1
    assert f"{path}: invalid workflow (1 error(s)):\n  {expected}" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = ostinato_cli("validate", path)
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "No such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_needs_a_file() -> None:
    result = ostinato_cli("validate")
    assert result.returncode == 2
    assert "files" in result.stderr


def test_version() -> None:
    result = ostinato_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"ostinato {ostinato.__version__}\n"
    assert ostinato.__version__ != "0.0.0+unknown"


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "ostinato"
    if not script.exists():
        pytest.skip("the ostinato console script is not installed next to this Python")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout == f"ostinato {ostinato.__version__}\n"
