"""Documents no command may choke on: duplicate keys, alias bombs, deep nesting, huge files.

Each is refused with one line, by the same check for files (`validate`, `run`, `hub`, `loop`)
and for mappings (the admission webhook's objects)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ostinato
from ostinato._model._document import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES

ROOT = Path(__file__).resolve().parents[2]
HEAD = "apiVersion: ostinato.dev/v1alpha1\nkind: Workflow\n"
LOOPS = (
    "spec:\n  loops:\n    - name: a\n"
    "      producer: {name: c, class: CounterProducer, config: {count: 3}}\n"
)


def _errors(path: Path) -> list[str]:
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(path)
    return [str(e) for e in info.value.errors]


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ostinato", "validate", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(HEAD + "metadata:\n  name: wf\n  name: other\n" + LOOPS)
    assert _errors(path) == [
        "line 5: duplicate key 'name' (first at line 4): one of them would be ignored"
    ]


def test_a_duplicate_key_deep_in_a_node_config_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        HEAD + "metadata: {name: wf}\n" + LOOPS.replace("{count: 3}", "{count: 3, count: 4}")
    )
    [error] = _errors(path)
    assert error == "line 7: duplicate key 'count' (first at line 7): one of them would be ignored"


def test_an_alias_bomb_is_refused_before_anything_expands_it(tmp_path: Path) -> None:
    lines = [HEAD + "metadata:\n  name: bomb\n  labels:", "    a0: &a0 [x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n" + LOOPS)
    [error] = _errors(path)
    assert f"more than {MAX_NODES} values once its aliases are expanded" in error
    result = _validate(path)  # the command too: one line, no hang (the test's timeout)
    assert result.returncode == 1
    assert "aliases are expanded" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 20_000])
def test_deep_nesting_is_refused_in_one_line(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(
        HEAD + "metadata: {name: deep}\nspec: {loops: " + "[" * depth + "]" * depth + "}\n"
    )
    result = _validate(path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "RecursionError" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2, result.stderr  # the file, one error


def test_a_file_larger_than_the_api_server_takes_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(HEAD + "metadata: {name: huge}\n" + LOOPS + "#" * (MAX_FILE_BYTES + 1))
    [error] = _errors(path)
    assert f"larger than the {MAX_FILE_BYTES} bytes a workflow may have" in error


def test_the_same_bounds_hold_for_a_mapping() -> None:
    """What the admission webhook validates arrives as a mapping, not a file."""
    nested: Any = []
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    mapping = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "deep", "labels": {"x": nested}},
        "spec": {"loops": []},
    }
    with pytest.raises(ostinato.WorkflowError) as info:
        ostinato.load_workflow(mapping)
    assert [str(e) for e in info.value.errors] == [f"nested deeper than {MAX_DEPTH} levels"]


def test_a_thousand_loop_workflow_is_within_the_bounds(tmp_path: Path) -> None:
    loop = (
        "  - name: l{i}\n    producer: {{name: c, class: CounterProducer, config: {{count: 3}}}}\n"
        "    nodes: [{{name: log, kind: blocking, class: LogSink, config: {{every: 10}}}}]\n"
    )
    path = tmp_path / "large.yaml"
    path.write_text(
        HEAD
        + "metadata: {name: large}\nspec:\n loops:\n"
        + "".join(" " + loop.format(i=i).replace("\n  ", "\n   ") for i in range(1000))
    )
    assert len(ostinato.load_workflow(path).loops) == 1000
