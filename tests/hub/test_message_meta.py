"""What travels with a queue message besides its payload: the writer's loop, iteration, trace
id and time, read by the reader as ``meta['source']`` and its iteration's trace id."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ostinato import BlockingNode, NodeData, WorkflowOrchestrator
from ostinato._model._queue_nodes import _source

from .conftest import (
    complete,
    go,
    loop,
    node,
    queue,
    reader,
    start_writing,
    subscribed,
    until,
    workflow,
    writer,
)
from .nodes import RecordConfig

N = 50


class Journal(BlockingNode[RecordConfig]):
    """Appends one JSON line per iteration: payload, trace id, loop, iteration and meta."""

    def process(self, data: NodeData) -> NodeData:
        with open(self.config.journal, "a", encoding="utf-8") as out:
            line = {
                "payload": data.payload,
                "trace_id": data.trace_id,
                "loop": data.loop,
                "iteration": data.iteration,
                "created_at": data.created_at,
                "meta": data.meta,
            }
            out.write(json.dumps(line) + "\n")
        return data


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["blocking", "nonBlocking"])
def test_the_reader_sees_where_each_message_came_from(
    run: Callable[..., WorkflowOrchestrator], tmp_path: Path, kind: str
) -> None:
    sent, got = tmp_path / "sent", tmp_path / "got"
    doc = workflow(
        loop(
            "w",
            "thread",
            node("count", "GoCounter", count=N, go=go(tmp_path)),
            node("journal", f"{__name__}:Journal", "blocking", journal=str(sent)),
            writer("put", "q", kind=kind),
        ),
        loop(
            "r",
            "thread",
            reader("take", "q"),
            node("journal", f"{__name__}:Journal", "blocking", journal=str(got)),
        ),
        queues=[queue("q")],
    )
    orch = run(doc)
    assert subscribed(orch, "r")
    start_writing(go(tmp_path))
    assert until(lambda: got.exists() and complete(got, N))
    by_value = {x["payload"]: x for x in lines(sent)}
    for x in lines(got):
        src = by_value[x["payload"]]
        # The reader's iteration carries the writer's trace id: one trace across loops.
        assert x["trace_id"] == src["trace_id"]
        assert x["loop"] == "r"
        assert x["meta"]["queue"] == "q"
        assert x["meta"]["redelivered"] is False
        assert x["meta"]["source"] == {
            "loop": "w",
            "iteration": src["iteration"],
            "created_at": src["created_at"],
        }


def test_meta_is_read_in_both_shapes() -> None:
    """Writers send [loop, iteration, trace_id, created_at]; a map is what older writers put
    in a durable queue, and a message without meta (written by hand) has no source."""
    as_list = msgpack.packb(["w", 3, "00000000000000ab", 1.5], use_bin_type=True)
    as_map = msgpack.packb(
        {"loop": "w", "iteration": 3, "trace_id": "00000000000000ab", "created_at": 1.5},
        use_bin_type=True,
    )
    assert _source(as_list) == _source(as_map) == ("w", 3, "00000000000000ab", 1.5)
    assert _source(b"") == (None, None, None, None)
    assert _source(msgpack.packb(7)) == (None, None, None, None)
