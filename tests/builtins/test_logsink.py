"""LogSink: logs at its level with the formatted message, every Nth call, passes data on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ostinato import LoopState, WorkflowError, load_workflow

from .nodes import read_records
from .support import PROMPT, node, recorder, running, workflow


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def sink_logs() -> Iterator[list[logging.LogRecord]]:
    """Records of logger ``ostinato.node.main.log``, whatever the ``ostinato`` logger is set to
    (``configure_logging`` stops propagation, so caplog's root handler may never see them)."""
    logger = logging.getLogger("ostinato.node.main.log")
    handler = _Collect()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR"])
@pytest.mark.parametrize("pool", ["thread", "asyncio"])
def test_logs_every_nth_at_level_and_passes_data_through(
    pool: str, level: str, tmp_path: Path, sink_logs: list[logging.LogRecord]
) -> None:
    out = tmp_path / "rec.jsonl"
    sink = node(
        "log",
        "LogSink",
        "blocking",
        level=level,
        every=3,
        message="{loop}#{iteration}: {payload} [{trace_id}]",
    )
    doc = workflow(
        pool, node("count", "CounterProducer", start=100, count=10), [sink, recorder(out)]
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    assert status.state is LoopState.FINISHED
    assert status.node("log").calls == 10
    records = read_records(out)
    # Passed through unchanged: same payloads, iterations and trace ids reach the next node.
    assert [r["payload"] for r in records] == list(range(100, 110))
    assert [r["iteration"] for r in records] == list(range(1, 11))
    trace = {r["iteration"]: r["trace_id"] for r in records}
    # One iteration in three: the 1st, 4th, 7th and 10th.
    assert [r.getMessage() for r in sink_logs] == [
        f"main#{i}: {99 + i} [{trace[i]}]" for i in (1, 4, 7, 10)
    ]
    assert {r.levelname for r in sink_logs} == {level}
    assert [getattr(r, "iteration", None) for r in sink_logs] == [1, 4, 7, 10]


def test_default_message_and_level(tmp_path: Path, sink_logs: list[logging.LogRecord]) -> None:
    doc = workflow(
        "thread", node("count", "CounterProducer", count=2), [node("log", "LogSink", "blocking")]
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
    assert [(r.levelno, r.getMessage()) for r in sink_logs] == [
        (logging.INFO, "iteration 1: 0"),
        (logging.INFO, "iteration 2: 1"),
    ]


def test_as_non_blocking_node_every_is_exact(
    tmp_path: Path, sink_logs: list[logging.LogRecord]
) -> None:
    """Non-blocking calls run on several side-effect threads at once; every=N stays exact."""
    sink = node("log", "LogSink", "nonBlocking", every=5, message="{payload}")
    doc = workflow(
        "thread",
        node("count", "CounterProducer", count=200),
        [{**sink, "maxInFlight": 8}],
        sideEffectWorkers=8,
    )
    with running(doc) as orch:
        assert orch.wait(PROMPT)
        status = orch.loop("main").status()
    assert status.node("log").calls == 200
    assert status.node("log").errors == 0
    assert len(sink_logs) == 40
    assert len({r.getMessage() for r in sink_logs}) == 40


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"level": "TRACE"}, "level"),
        ({"every": 0}, "every"),
        ({"message": "{payload} {unknown}"}, "message"),
        ({"message": "{0}"}, "message"),
        ({"message": "{payload"}, "message"),
    ],
)
def test_bad_config_is_rejected_with_field_path(config: dict[str, Any], field: str) -> None:
    doc = workflow(
        "thread", node("count", "CounterProducer"), [node("log", "LogSink", "blocking", **config)]
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow(doc)
    assert [e.path for e in info.value.errors] == [f"spec.loops[0].nodes[0].config.{field}"]


def test_message_may_use_attributes_and_format_specs(
    sink_logs: list[logging.LogRecord],
) -> None:
    sink = node("log", "LogSink", "blocking", message="{iteration:03d} {payload.real}")
    doc = workflow("thread", node("count", "CounterProducer", start=7, count=1), [sink])
    with running(doc) as orch:
        assert orch.wait(PROMPT)
    assert [r.getMessage() for r in sink_logs] == ["001 7"]
