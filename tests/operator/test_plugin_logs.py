"""`kubectl ostinato logs` without a cluster: the kubelet's lines parsed (the runtime's JSON and
text records, and anything else), ordered by time across pods, and rendered with their origin."""

from __future__ import annotations

import json

import pytest

from ostinato_operator._plugin._errors import PluginError
from ostinato_operator._plugin._logs import parse_line, parse_since, render, sort_key


def test_a_json_record_is_rendered_readably_with_its_node() -> None:
    record = {
        "ts": "2026-12-06T19:00:00.100Z",
        "level": "ERROR",
        "logger": "ostinato.node.reader.store",
        "message": "store failed",
        "loop": "reader",
        "node": "store",
        "exception": "Traceback (most recent call last):\nValueError: bad",
    }
    line = parse_line(f"2026-12-06T19:00:00.123456789Z {json.dumps(record)}", "reader", "1")
    assert (line.level, line.node) == ("ERROR", "store")
    assert render(line) == (
        "[reader/1 store] 2026-12-06T19:00:00.123456789Z ERROR store failed\n"
        "    Traceback (most recent call last):\n    ValueError: bad"
    )


def test_a_text_record_names_its_node_by_its_logger() -> None:
    raw = "2026-12-06T19:00:01Z 2026-12-06 19:00:01,002 INFO    ostinato.node.reader.got: got 7"
    line = parse_line(raw, "reader", "0")
    assert render(line) == "[reader/0 got] 2026-12-06T19:00:01Z INFO got 7"
    other = parse_line("2026-12-06T19:00:01Z printed by a node\r", "writer", "0")
    assert render(other) == "[writer/0] 2026-12-06T19:00:01Z printed by a node"


def test_lines_of_several_pods_interleave_by_time_not_by_text() -> None:
    # As text ".12Z" sorts after ".123Z"; as time it is before it.
    lines = [
        parse_line("2026-12-06T19:00:00.123Z b", "reader", "0"),
        parse_line("2026-12-06T19:00:00.12Z a", "writer", "0"),
        parse_line("2026-12-06T19:00:01Z c", "writer", "0"),
        parse_line("2026-12-06T19:00:00.5Z b2", "reader", "1"),
    ]
    assert [ln.message for ln in sorted(lines, key=sort_key)] == ["a", "b", "b2", "c"]


def test_since_is_kubectls_duration() -> None:
    assert [parse_since(t) for t in ("30s", "5m", "1h30m", "0.5s")] == [30, 300, 5400, 1]
    for bad in ("5", "5d", "m5", "-1s", ""):
        with pytest.raises(PluginError, match=f"--since {bad}: not a duration"):
            parse_since(bad)
