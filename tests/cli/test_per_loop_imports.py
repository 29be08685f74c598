"""A hub imports no node class and a loop only its own: a loop's image may carry nodes only it
has (on Kubernetes the writer and the hub crashed on the reader's class). And a node module that
exits or is interrupted on import is an error at its `class` field like any other."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_distributed_http import REPO, WAIT, Processes, get, until

WORKFLOW = textwrap.dedent("""
    apiVersion: ostinato.dev/v1alpha1
    kind: Workflow
    metadata: {name: split}
    spec:
      queues:
        - {name: nums, mode: work, capacity: 50}
      loops:
        - name: gen
          producer: {name: tick, class: IntervalProducer, config: {periodSeconds: 0.005}}
          nodes:
            - {name: put, kind: blocking, queue: {write: nums}}
        - name: sink
          heartbeatSeconds: 0.2
          producer: {name: nums, queue: {read: nums}}
          nodes:
            - {name: keep, kind: blocking, class: "sink_only_nodes:Keep"}
""")
SINK_ONLY = textwrap.dedent("""
    from ostinato import BlockingNode

    class Keep(BlockingNode):
        def process(self, data):
            return data.payload
""")


class SplitImages(Processes):
    """The distributed test's processes, where only the sink's process can import its node."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.file.write_text(WORKFLOW)
        self.sink_image = folder / "sink-image"
        self.sink_image.mkdir()
        (self.sink_image / "sink_only_nodes.py").write_text(SINK_ONLY)

    def sink(self, with_its_nodes: bool) -> subprocess.Popen[str]:
        env = dict(os.environ)
        if with_its_nodes:
            env["PYTHONPATH"] = os.pathsep.join([str(self.sink_image), str(REPO)])
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "ostinato", "loop", str(self.file), "--loop", "sink",
                "--hub", f"tcp://127.0.0.1:{self.zmq}", "--insecure",
            ],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc


@pytest.fixture
def split(tmp_path: Path) -> Iterator[SplitImages]:
    c = SplitImages(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_the_hub_and_other_loops_do_not_import_a_loops_own_nodes(split: SplitImages) -> None:
    split.hub()  # would exit with "cannot import module 'sink_only_nodes'" before
    split.loop("gen")
    until(lambda: split.loops()["gen"]["iterations"] > 0, "gen iterating")
    # Without its nodes the sink itself refuses to start, naming the field, in one line.
    missing = split.sink(with_its_nodes=False)
    _, err = missing.communicate(timeout=WAIT)
    assert missing.returncode == 1
    assert "spec.loops[1].nodes[0].class" in err, err
    assert "sink_only_nodes" in err, err
    assert "Traceback" not in err, err
    # With them (its own image), it reads what gen writes.
    split.sink(with_its_nodes=True)
    until(lambda: split.loops()["sink"]["iterations"] > 10, "sink reading")
    code, doc = get(split.url + "/status")
    assert code == 200
    assert {lp["name"]: lp["state"] for lp in doc["loops"]} == {
        "gen": "running",
        "sink": "running",
    }


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("import sys\nsys.exit(3)\n", "it called sys.exit(3)"),
        ("raise KeyboardInterrupt\n", "it raised KeyboardInterrupt"),
        ("raise RuntimeError('no sensor attached')\n", "RuntimeError: no sensor attached"),
    ],
)
def test_a_node_module_that_exits_on_import_is_reported_at_its_class(
    tmp_path: Path, body: str, said: str
) -> None:
    (tmp_path / "rude_nodes.py").write_text(body)
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("sink_only_nodes:Keep", "rude_nodes:Keep"))
    for command in ("validate", "run"):
        result = subprocess.run(
            [sys.executable, "-m", "ostinato", command, str(tmp_path / "wf.yaml")],
            cwd=REPO, capture_output=True, text=True, timeout=WAIT,
        )  # fmt: skip
        assert result.returncode == 1, (command, result.returncode, result.stderr)
        assert "spec.loops[1].nodes[0].class" in result.stderr, result.stderr
        assert said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
