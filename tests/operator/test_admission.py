"""Admission runs the runtime's own validation: same field-named messages as `ostinato validate`."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ostinato_operator._admission import check

from .support import EXAMPLES, example


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_admitted(path: Path) -> None:
    verdict = check(yaml.safe_load(path.read_text()))
    assert verdict.errors == []
    assert verdict.workflow is not None


def test_unimportable_user_classes_are_warnings_not_errors() -> None:
    doc = example("pipeline.yaml")
    # Not demo_nodes: another test may have made the examples' folder importable.
    doc["spec"]["loops"][0]["nodes"][0]["class"] = "ostinato_no_such_package:Node"
    verdict = check(doc)
    assert verdict.errors == []
    assert any(
        w.startswith("spec.loops[0].nodes[0].class: not importable") for w in verdict.warnings
    )


def _validate_cli(doc: dict[str, object], tmp_path: Path) -> list[str]:
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "ostinato", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    return [line.strip() for line in proc.stderr.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["spec"]["loops"][1].update(name="writer"), "spec.loops[1].name"),
        (
            lambda d: d["spec"]["loops"][0]["nodes"][0].update(queue={"write": "nope"}),
            "spec.loops[0].nodes[0].queue.write",
        ),
        (
            lambda d: d["spec"]["loops"][0]["producer"]["config"].update(periodSeconds=-1),
            "spec.loops[0].producer.config.periodSeconds",
        ),
        (lambda d: d["spec"]["queues"][0].update(capacity=0), "spec.queues[0].capacity"),
        (lambda d: d["spec"]["loops"][0].update(replicas="many"), "spec.loops[0].replicas"),
    ],
    ids=["duplicate-loop", "unknown-queue", "bad-builtin-config", "range", "type"],
)
def test_rejections_name_the_field_like_ostinato_validate(
    mutate: object, path: str, tmp_path: Path
) -> None:
    doc = copy.deepcopy(example("k8s-counter.yaml"))
    mutate(doc)  # type: ignore[operator]
    verdict = check(doc)
    assert verdict.workflow is None
    assert next(e.path for e in verdict.errors) == path
    lines = verdict.message.splitlines()
    assert lines[0].startswith("invalid workflow (")
    assert [line.strip() for line in lines[1:]] == _validate_cli(doc, tmp_path)


def test_a_name_the_hub_service_cannot_take_is_rejected() -> None:
    doc = example("k8s-counter.yaml")
    doc["metadata"]["name"] = "9lives"
    verdict = check(doc)
    assert [e.path for e in verdict.errors] == ["metadata.name"]
    assert "start with a letter" in verdict.message
