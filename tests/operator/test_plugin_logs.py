"""`kubectl ostinato logs` without a cluster: the kubelet's lines parsed (the runtime's JSON and
text records, and anything else), ordered by time across pods, and rendered with their origin."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ostinato_operator._plugin import _logs
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


#: The pods' reads are replaced: no cluster is asked.
NO_TARGET: Any = None
LOGS = {
    "counter-writer-0": [
        "2026-12-06T19:00:00.1Z 2026-12-06 19:00:00,100 INFO    ostinato.node.writer.sent: sent 1",
        "2026-12-06T19:00:00.3Z 2026-12-06 19:00:00,300 INFO    ostinato.node.writer.sent: sent 2",
    ],
    "counter-reader-0": [
        "2026-12-06T19:00:00.2Z 2026-12-06 19:00:00,200 INFO    ostinato.node.reader.got: got 1",
        "2026-12-06T19:00:00.25Z 2026-12-06 19:00:00,250 INFO    ostinato.loop.reader: a loop line",
    ],
}


@pytest.fixture
def two_pods(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None, bool]]:
    """Two loop pods whose logs are LOGS; the reads made, as (pod, since, follow)."""
    reads: list[tuple[str, int | None, bool]] = []

    def read(target: Any, pod: Any, since: int | None, follow: bool) -> Iterator[str]:
        reads.append((pod.name, since, follow))
        yield from LOGS[pod.name]

    pods = [
        _logs._Pod("counter-reader-0", "reader", "0"),
        _logs._Pod("counter-writer-0", "writer", "0"),
    ]
    workflow = {
        "metadata": {"name": "counter"},
        "spec": {"loops": [{"name": "writer"}, {"name": "reader"}]},
    }
    monkeypatch.setattr(_logs, "get_workflow", lambda target, name: workflow)
    monkeypatch.setattr(_logs, "_pods", lambda target, name, loop: pods)
    monkeypatch.setattr(_logs, "_read", read)
    return reads


def test_every_pod_interleaved_by_time_and_one_node_kept(two_pods: list[Any]) -> None:
    out = io.StringIO()
    assert _logs.show_logs(NO_TARGET, "counter", None, None, "2m", False, out) == 0
    assert [line.split("] ")[0] + "]" for line in out.getvalue().splitlines()] == [
        "[writer/0 sent]", "[reader/0 got]", "[reader/0]", "[writer/0 sent]",
    ]  # fmt: skip
    assert sorted(two_pods) == [("counter-reader-0", 120, False), ("counter-writer-0", 120, False)]
    out = io.StringIO()
    assert _logs.show_logs(NO_TARGET, "counter", None, "got", None, False, out) == 0
    assert out.getvalue() == "[reader/0 got] 2026-12-06T19:00:00.2Z INFO got 1\n"


def test_follow_reads_every_pod_until_all_streams_end(two_pods: list[Any]) -> None:
    out = io.StringIO()
    assert _logs.show_logs(NO_TARGET, "counter", None, None, None, True, out) == 0
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(
        _logs.render(_logs.parse_line(raw, pod.split("-")[1], "0"))
        for pod, raws in LOGS.items()
        for raw in raws
    )
    assert all(follow for _, _, follow in two_pods)


def test_follow_picks_up_pods_that_appear_and_reads_them_from_their_start(
    two_pods: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An autoscaled loop's new replica (and a pod replaced under the same name) is followed
    too; the follow ends once every stream ended and no new pod is found."""
    reader = _logs._Pod("counter-reader-0", "reader", "0", uid="a")
    replaced = _logs._Pod("counter-reader-0", "reader", "0", uid="b")
    added = _logs._Pod("counter-reader-1", "reader", "1", uid="c")
    later = {
        "counter-reader-1": [
            "2026-12-06T19:00:01Z 2026-12-06 19:00:01,000 INFO    ostinato.node.reader.got: got 9"
        ]
    }
    listings = iter([[reader], [reader, added], [replaced, added]])
    last: list[list[Any]] = [[reader]]

    def pods(target: Any, name: str, loop: str | None) -> list[Any]:
        last[0] = next(listings, last[0])
        return last[0]

    def read(target: Any, pod: Any, since: int | None, follow: bool) -> Iterator[str]:
        two_pods.append((f"{pod.name}/{pod.uid}", since, follow))
        yield from {**LOGS, **later}[pod.name]

    monkeypatch.setattr(_logs, "_pods", pods)
    monkeypatch.setattr(_logs, "_read", read)
    out = io.StringIO()
    assert _logs.show_logs(NO_TARGET, "counter", "reader", None, "1m", True, out) == 0
    assert sorted(two_pods) == [
        ("counter-reader-0/a", 60, True),  # there at the start: from --since
        ("counter-reader-0/b", None, True),  # replaced: its whole log is new
        ("counter-reader-1/c", None, True),  # added: the same
    ]
    assert "[reader/1 got]" in out.getvalue()
    assert out.getvalue().count("[reader/0 got]") == 2  # once per incarnation of the pod
