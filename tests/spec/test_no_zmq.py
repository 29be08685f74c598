"""Validating a workflow loads no ZeroMQ: `load_workflow`, `ostinato validate` and the operator's
admission check run where no messaging is needed (a CI step, the webhook), and a plan's queue
nodes know their hub connection only by the types of `_ports.py`. Each case runs in a fresh
interpreter, so nothing another test imported counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.timeout(120)

CASES = {
    "load_workflow": f"""
import sys
sys.path.insert(0, {str(EXAMPLES)!r})
from ostinato import load_workflow
plan = load_workflow({str(EXAMPLES / "pipeline.yaml")!r})
assert [loop.name for loop in plan.loops], plan
""",
    "ostinato validate": f"""
from ostinato._cli import main
assert main(["validate", {str(EXAMPLES / "pipeline.yaml")!r}]) == 0
""",
    "admission": f"""
import yaml
from ostinato_operator._admission import check
verdict = check(yaml.safe_load(open({str(EXAMPLES / "k8s-counter.yaml")!r})))
assert verdict.errors == [], verdict.errors
""",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validating_loads_no_zeromq(case: str) -> None:
    code = CASES[case] + "\nimport sys\nprint(sorted(m for m in sys.modules if 'zmq' in m))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=EXAMPLES,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_the_lazy_names_are_still_there() -> None:
    """The names imported on first use resolve as before (and unknown ones still fail)."""
    import ostinato
    import ostinato.lowlevel as lowlevel

    assert ostinato.WorkflowOrchestrator.__name__ == "WorkflowOrchestrator"
    assert lowlevel.LoopHandle.__name__ == "LoopHandle"
    assert callable(lowlevel.generate_keys)
    assert "server_public" in lowlevel.CURVE_ENV_VARS
    assert lowlevel.CurveKeys.__name__ == "CurveKeys"
    for face in (ostinato, lowlevel):
        with pytest.raises(AttributeError, match="no_such_name"):
            face.no_such_name  # type: ignore[attr-defined]  # noqa: B018
