"""`ostinato run` end to end: a real subprocess, real pools, real SQLite files.

Every test starts ``python -m ostinato run ...`` from the repository root and reads its output
as it arrives. Signals are sent only once stderr shows that the loops are running (and have
iterated), never after a sleep; every wait has a timeout well under pytest's global 60 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

#: Longest one `ostinato run` may take to exit once it should, seconds.
RUN_TIMEOUT = 40.0
#: Longest the loops may take to report running (a process loop spawns an interpreter).
START_TIMEOUT = 30.0

#: One loop per pool: loop name -> pool. The names double as SQLite table names.
POOLS = {"threads": "thread", "tasks": "asyncio", "procs": "process"}

SUMMARY = re.compile(
    r"ostinato\.cli: loop (?P<loop>[a-z0-9-]+): (?P<state>\w+) after (?P<iterations>\d+) "
    r"iteration\(s\); drained (?P<drained>\d+), abandoned (?P<abandoned>\d+)"
)


# -- running the command ---------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def table(self) -> dict[str, dict[str, str]]:
        """The last loop status table printed on stdout: loop name -> column -> cell."""
        lines = self.stdout.splitlines()
        heads = [i for i, line in enumerate(lines) if line.startswith("LOOP ")]
        assert heads, f"no status table on stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        header = lines[heads[-1]].split()
        # LOOP POOL STATE ITERATIONS FAILED "NODES FAILING" REASON: REASON may hold spaces.
        columns = [*header[:5], "NODES FAILING", "REASON"]
        table = {}
        for line in lines[heads[-1] + 1 :]:
            if not line.strip():
                break
            cells = line.split(None, len(columns) - 1)
            row = dict(zip(columns, cells + [""] * (len(columns) - len(cells)), strict=True))
            table[row["LOOP"]] = row
        return table

    def summaries(self) -> dict[str, dict[str, Any]]:
        """The CLI's closing log line per loop: state, iterations, drained, abandoned."""
        found = {}
        for match in SUMMARY.finditer(self.stderr):
            found[match["loop"]] = {
                "state": match["state"],
                "iterations": int(match["iterations"]),
                "drained": int(match["drained"]),
                "abandoned": int(match["abandoned"]),
            }
        return found


class Ostinato:
    """``python -m ostinato ARGS`` in the repository root; output is collected as it comes so
    tests can wait for a line, and the pipes never fill up."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ostinato", *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._err: list[str] = []
        self._err_closed = False
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            if sink is self._err:
                self._err_closed = True
            self._cond.notify_all()

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._err)

    def wait_for_stderr(
        self, predicate: Callable[[list[str]], bool], what: str, timeout: float = START_TIMEOUT
    ) -> None:
        """Block until ``predicate(stderr lines so far)`` holds; fail (and kill) otherwise."""
        with self._cond:
            self._cond.wait_for(lambda: predicate(self._err) or self._err_closed, timeout)
            ok = predicate(self._err)
        if not ok:
            self.kill()
            pytest.fail(f"ostinato never showed {what} within {timeout:g}s; stderr:\n{self.stderr}")

    def wait_until_iterating(self, loops: Iterable[str]) -> None:
        """Wait until every loop in ``loops`` has reported running and its ``log`` node (a
        LogSink) has logged iteration 1."""
        wanted = set(loops)

        def iterating(lines: list[str]) -> bool:
            text = "".join(lines)
            return all(
                re.search(rf"ostinato\.loop\.{loop}: running$", text, re.M)
                and f"ostinato.node.{loop}.log: iteration 1:" in text
                for loop in wanted
            )

        self.wait_for_stderr(iterating, f"loops {sorted(wanted)} iterating")

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = RUN_TIMEOUT) -> Result:
        """Wait for the command to exit (at most ``timeout`` seconds) and collect its output."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"ostinato {' '.join(self.args)} did not exit within {timeout:g}s; "
                f"stderr:\n{self.stderr}"
            )
        # Process loops share the pipes and exit before their parent; EOF follows at once.
        for reader in self._readers:
            reader.join(timeout)
        with self._cond:
            return Result(code, "".join(self._out), "".join(self._err))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def ostinato() -> Iterator[Callable[..., Ostinato]]:
    """Start ``ostinato`` commands; any still running when the test ends is killed."""
    started: list[Ostinato] = []

    def start(*args: str | Path) -> Ostinato:
        command = Ostinato(*(str(a) for a in args))
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()


# -- workflow documents ----------------------------------------------------------------------


def write_workflow(folder: Path, name: str, loops: list[dict[str, Any]]) -> Path:
    document = {
        "apiVersion": "ostinato.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"loops": loops},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def loop(
    name: str, pool: str, producer: dict[str, Any], *nodes: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    return {"name": name, "pool": pool, "producer": producer, "nodes": list(nodes), **settings}


def counter(**config: Any) -> dict[str, Any]:
    return {"name": "count", "class": "CounterProducer", "config": config}


def interval(period: float, **config: Any) -> dict[str, Any]:
    return {
        "name": "tick",
        "class": "IntervalProducer",
        "config": {"periodSeconds": period, **config},
    }


def log_sink(every: int = 1) -> dict[str, Any]:
    return {"name": "log", "kind": "blocking", "class": "LogSink", "config": {"every": every}}


def store(db: Path, table: str) -> dict[str, Any]:
    """A non-blocking SQLiteWriter: one row per iteration, written off the chain."""
    return {
        "name": "store",
        "kind": "nonBlocking",
        "class": "SQLiteWriter",
        "config": {"path": str(db), "table": table},
    }


def three_pools(
    producer: Callable[[], dict[str, Any]], db: Path, every: int = 1
) -> list[dict[str, Any]]:
    """One loop per pool, each ``producer -> LogSink -> SQLiteWriter`` into its own table."""
    return [
        loop(name, pool, producer(), log_sink(every), store(db, name))
        for name, pool in POOLS.items()
    ]


def stored_iterations(db: Path, table: str) -> list[int]:
    """The iteration numbers the SQLiteWriter of loop ``table`` wrote, in order."""
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute(f"SELECT iteration FROM {table} ORDER BY iteration")]


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [1, 7])
def test_iterations_stops_every_pool_after_exactly_n(
    tmp_path: Path, ostinato: Callable[..., Ostinato], iterations: int
) -> None:
    db = tmp_path / "rows.db"
    loops = three_pools(counter, db)
    loops[1]["producer"] = interval(0.005)  # the asyncio loop keeps a schedule instead
    path = write_workflow(tmp_path, "iterations", loops)

    result = ostinato("run", path, "--iterations", iterations, "--status-every", "0").finish()

    assert result.returncode == 0, result.stderr
    table = result.table()
    assert set(table) == set(POOLS)
    summaries = result.summaries()
    for name, pool in POOLS.items():
        assert table[name]["POOL"] == pool
        assert table[name]["STATE"] == "finished", table[name]
        assert table[name]["ITERATIONS"] == str(iterations), table[name]
        assert table[name]["FAILED"] == "0"
        assert summaries[name]["iterations"] == iterations
        assert summaries[name]["abandoned"] == 0
        # The non-blocking writer ran once per iteration; the stop drained it, lost nothing.
        assert stored_iterations(db, name) == list(range(1, iterations + 1))
        # The blocking LogSink saw every iteration, the process loop's included.
        for i in range(1, iterations + 1):
            assert f"ostinato.node.{name}.log: iteration {i}: " in result.stderr


def test_duration_stops_a_forever_running_workflow(
    tmp_path: Path, ostinato: Callable[..., Ostinato]
) -> None:
    db = tmp_path / "rows.db"
    path = write_workflow(tmp_path, "forever", three_pools(lambda: interval(0.01), db, every=50))

    started = time.monotonic()
    result = ostinato("run", path, "--duration", "1.5", "--status-every", "0").finish()
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert elapsed >= 1.5
    assert "duration of 1.5s reached: stopping" in result.stderr
    table = result.table()
    assert {name: row["STATE"] for name, row in table.items()} == dict.fromkeys(POOLS, "stopped")
    for name in ("threads", "tasks"):  # in-process loops certainly ran (period 10 ms)
        assert int(table[name]["ITERATIONS"]) > 0
    for name in POOLS:
        iterations = int(table[name]["ITERATIONS"])
        if iterations:
            assert stored_iterations(db, name) == list(range(1, iterations + 1))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_signal_stops_gracefully_and_drains_everything(
    tmp_path: Path, ostinato: Callable[..., Ostinato], sig: signal.Signals
) -> None:
    db = tmp_path / "rows.db"
    # Producers as fast as the loop runs, so non-blocking writes are in flight at the signal.
    path = write_workflow(tmp_path, "interrupted", three_pools(counter, db, every=1000))

    run = ostinato("run", path, "--status-every", "0")
    run.wait_until_iterating(POOLS)
    run.send_signal(sig)
    result = run.finish()

    assert result.returncode == 0, result.stderr
    assert f"{sig.name}: stopping gracefully" in result.stderr
    table = result.table()
    summaries = result.summaries()
    assert set(summaries) == set(POOLS), result.stderr
    for name in POOLS:
        summary = summaries[name]
        assert summary["state"] == "stopped"
        assert table[name]["STATE"] == "stopped"
        assert int(table[name]["ITERATIONS"]) == summary["iterations"] >= 1
        assert f"drained {summary['drained']}, abandoned 0" in table[name]["REASON"]
        assert summary["abandoned"] == 0
        # Nothing lost in the drain: one row per iteration, each iteration exactly once.
        assert stored_iterations(db, name) == list(range(1, summary["iterations"] + 1))


HANG_NODES = '''\
"""Side effects that do not finish by themselves, so a stop drains for its whole timeout."""

import asyncio
import threading

from ostinato import NodeData, NonBlockingNode


class Hang(NonBlockingNode):
    def process(self, data: NodeData) -> None:
        threading.Event().wait(55)


class AsyncHang(NonBlockingNode):
    async def process(self, data: NodeData) -> None:
        await asyncio.sleep(55)
'''


def hang(folder: Path, cls: str = "Hang", **fields: Any) -> dict[str, Any]:
    """A non-blocking node that never returns (its module is written next to the workflow)."""
    (folder / "hang_nodes.py").write_text(HANG_NODES, encoding="utf-8")
    return {"name": "hang", "kind": "nonBlocking", "class": f"hang_nodes:{cls}", **fields}


def _children(parent: int) -> list[int]:
    """PIDs of the process loops' children of `parent` (python -m ostinato._hosting._child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"ostinato._hosting._child" in cmd:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_second_sigint_exits_at_once_without_draining(
    tmp_path: Path, ostinato: Callable[..., Ostinato]
) -> None:
    path = write_workflow(
        tmp_path,
        "hanging",
        [
            loop(
                name,
                pool,
                interval(0.05),
                log_sink(),
                hang(tmp_path, maxInFlight=1000),
                drainTimeoutSeconds=50,
            )
            for name, pool in (("threads", "thread"), ("procs", "process"))
        ],
    )

    run = ostinato("run", path, "--status-every", "0")
    run.wait_until_iterating(["threads", "procs"])
    children = _children(run.proc.pid)
    assert len(children) == 1, children
    run.send_signal(signal.SIGINT)
    run.wait_for_stderr(
        lambda lines: sum("draining" in line for line in lines) >= 2,
        "the stop drain of both loops",
    )
    run.send_signal(signal.SIGINT)
    result = run.finish(timeout=10)  # far less than the 50 s drain timeout

    assert result.returncode == 130, result.stderr
    assert "second interrupt: exiting without draining" in result.stderr
    # The process loop's child went with it: it did not drain its side effects as an orphan.
    deadline = time.monotonic() + 1.0
    while any(_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in children if _running(pid)], "a child outlived the command"


@pytest.mark.parametrize(
    ("pool", "cls"),
    [("thread", "Hang"), ("asyncio", "Hang"), ("asyncio", "AsyncHang"), ("process", "Hang")],
)
def test_side_effects_past_the_drain_timeout_are_abandoned_and_the_command_exits(
    tmp_path: Path, ostinato: Callable[..., Ostinato], pool: str, cls: str
) -> None:
    db = tmp_path / "rows.db"
    path = write_workflow(
        tmp_path,
        "abandon",
        [
            loop(
                "hangs",
                pool,
                counter(count=3),
                store(db, "hangs"),
                hang(tmp_path, cls),
                drainTimeoutSeconds=0.5,
            )
        ],
    )

    # The producer ends after 3 iterations; 3 calls of Hang never return by themselves.
    result = ostinato("run", path, "--status-every", "0").finish(timeout=20)

    assert result.returncode == 0, result.stderr
    assert "drain timeout (0.5s)" in result.stderr
    summary = result.summaries()["hangs"]
    assert summary["state"] == "finished"
    assert summary["iterations"] == 3
    assert summary["abandoned"] == 3
    reason = result.table()["hangs"]["REASON"]
    assert reason.startswith("the producer is exhausted"), reason
    assert "drained " in reason, reason
    assert stored_iterations(db, "hangs") == [1, 2, 3]  # the other side effect lost nothing


def test_stop_is_not_held_up_by_a_full_non_blocking_node(
    tmp_path: Path, ostinato: Callable[..., Ostinato]
) -> None:
    path = write_workflow(
        tmp_path,
        "backpressure",
        [
            loop(
                "threads",
                "thread",
                interval(0.01),
                log_sink(),
                hang(tmp_path, maxInFlight=1),
                drainTimeoutSeconds=0.5,
            )
        ],
    )

    run = ostinato("run", path, "--status-every", "0")
    # Iteration 1's call of Hang holds the only slot; iteration 2 waits for it after LogSink.
    run.wait_for_stderr(
        lambda lines: any("ostinato.node.threads.log: iteration 2:" in line for line in lines),
        "iteration 2 waiting for a slot",
    )
    run.send_signal(signal.SIGINT)
    result = run.finish(timeout=10)  # 0.5 s drain timeout; Hang would take 55 s

    assert result.returncode == 0, result.stderr


def test_json_logs_carry_workflow_loop_node_and_iteration(
    tmp_path: Path, ostinato: Callable[..., Ostinato]
) -> None:
    db = tmp_path / "rows.db"
    path = write_workflow(tmp_path, "json-logs", three_pools(counter, db))

    result = ostinato("run", path, "--iterations", "3", "--log-format", "json").finish()

    assert result.returncode == 0, result.stderr
    records = []
    for line in result.stderr.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stderr line is not JSON: {line!r}\nstderr:\n{result.stderr}")
    for line in result.stdout.splitlines():  # nothing for people on stdout either
        json.loads(line)
    assert records
    for record in records:
        assert isinstance(record, dict)
        assert {"ts", "level", "logger", "message"} <= record.keys()
        assert record["workflow"] == "json-logs", record
        parts = record["logger"].split(".")
        if parts[:2] == ["ostinato", "loop"]:
            assert record["loop"] == parts[2], record
        elif parts[:2] == ["ostinato", "node"]:
            assert (record["loop"], record["node"]) == (parts[2], ".".join(parts[3:])), record
    for name in POOLS:  # the process loop's records come through its parent's stderr too
        states = [r["message"] for r in records if r["logger"] == f"ostinato.loop.{name}"]
        assert "running" in states, name
        assert any(m.startswith("finished") for m in states), name
        logged = [r["iteration"] for r in records if r["logger"] == f"ostinato.node.{name}.log"]
        assert logged == [1, 2, 3], name


def _invalid(tmp_path: Path, case: str) -> tuple[dict[str, Any], str]:
    """The second loop of a document, with one mistake, and the field path the error names."""
    never = store(tmp_path / "never.db", "never")
    ok = loop("procs", "process", counter(), log_sink(), never)
    if case == "pool":
        return {**ok, "pool": "fiber"}, "spec.loops[1].pool"
    if case == "name":
        return {**ok, "name": "Bad_Name"}, "spec.loops[1].name"
    if case == "unknown-field":
        return {**ok, "maxIteratons": 3}, "spec.loops[1].maxIteratons"
    if case == "class":
        node = {"name": "x", "kind": "blocking", "class": "no_such_module:Thing"}
        return {**ok, "nodes": [node, never]}, "spec.loops[1].nodes[0].class"
    if case == "kind":
        return {**ok, "nodes": [{**log_sink(), "kind": "producer"}, never]}, (
            "spec.loops[1].nodes[0].kind"
        )
    if case == "config":
        return {**ok, "producer": interval(0)}, "spec.loops[1].producer.config.periodSeconds"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["pool", "name", "unknown-field", "class", "kind", "config"])
def test_invalid_workflow_exits_1_naming_the_field_and_starts_nothing(
    tmp_path: Path, ostinato: Callable[..., Ostinato], case: str
) -> None:
    bad_loop, field = _invalid(tmp_path, case)
    good_loop = loop("threads", "thread", counter(), store(tmp_path / "never.db", "threads"))
    path = write_workflow(tmp_path, "invalid", [good_loop, bad_loop])

    result = ostinato("run", path, "--iterations", "1").finish(timeout=20)

    assert result.returncode == 1, result.stderr
    assert "invalid workflow" in result.stderr
    assert f"  {field}: " in result.stderr, result.stderr
    assert result.stdout == ""
    assert "starting" not in result.stderr
    assert not (tmp_path / "never.db").exists()  # no node was set up


def test_unreadable_or_malformed_file_exits_1(
    tmp_path: Path, ostinato: Callable[..., Ostinato]
) -> None:
    missing = ostinato("run", tmp_path / "missing.yaml").finish(timeout=20)
    assert missing.returncode == 1
    assert "missing.yaml" in missing.stderr
    assert missing.stdout == ""

    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: ostinato.dev/v1alpha1\nspec: {loops: [\n", encoding="utf-8")
    result = ostinato("run", broken).finish(timeout=20)
    assert result.returncode == 1
    assert "not valid YAML" in result.stderr
    assert "line " in result.stderr
    assert result.stdout == ""


def test_demo_runs_and_stops_all_three_loops(ostinato: Callable[..., Ostinato]) -> None:
    result = ostinato(
        "run", "examples/demo.yaml", "--duration", "3", "--status-every", "0"
    ).finish()

    assert result.returncode == 0, result.stderr
    table = result.table()
    assert {name: (row["POOL"], row["STATE"]) for name, row in table.items()} == {
        "sensor": ("thread", "stopped"),
        "counter": ("asyncio", "stopped"),
        "worker": ("process", "stopped"),
    }
    assert int(table["sensor"]["ITERATIONS"]) > 0
    assert int(table["counter"]["ITERATIONS"]) > 0
    assert all(row["FAILED"] == "0" for row in table.values())
    assert "Traceback" not in result.stderr


BAD_SETUP_NODES = """
from ostinato import BlockingNode


class BadSetup(BlockingNode):
    def setup(self):
        raise RuntimeError("cannot open the device")

    def process(self, data):
        return data.payload
"""


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_loop_whose_setup_always_fails_ends_the_run_in_error_in_every_pool(
    tmp_path: Path, ostinato: Callable[..., Ostinato], pool: str
) -> None:
    """A process loop restarted its failing setup, then ended `stopped` and the run exited 0:
    a supervisor could not tell that the workflow never worked."""
    (tmp_path / "bad_nodes.py").write_text(BAD_SETUP_NODES, encoding="utf-8")
    restart = {"initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.2}
    bad = {"name": "open", "kind": "blocking", "class": "bad_nodes:BadSetup"}
    path = write_workflow(
        tmp_path, "broken", [loop("broken", pool, interval(0.05), bad, restart=restart)]
    )

    result = ostinato("run", path, "--duration", "2", "--status-every", "0").finish()

    assert result.returncode == 1, result.stderr
    assert result.summaries()["broken"]["state"] == "error", result.stderr
    assert result.table()["broken"]["STATE"] == "error"


FAILING_NODES = """
from ostinato import BlockingNode


class Parse(BlockingNode):
    def process(self, data):
        if data.iteration == 3:
            raise ValueError("bad input")
        return data.payload
"""


def test_a_loop_stopped_by_its_node_says_why_in_the_table_and_the_last_line(
    tmp_path: Path, ostinato: Callable[..., Ostinato]
) -> None:
    """`onError: stopLoop` ended the loop with only the drain as its reason; the cause was in
    the node's lastError, which neither the table nor the closing line shows."""
    (tmp_path / "failing_nodes.py").write_text(FAILING_NODES, encoding="utf-8")
    parse = {
        "name": "parse",
        "kind": "blocking",
        "class": "failing_nodes:Parse",
        "onError": "stopLoop",
    }
    other = loop("other", "thread", counter(count=5), log_sink())
    path = write_workflow(tmp_path, "parsing", [loop("parser", "thread", counter(), parse), other])

    # the run ends by itself: one loop stopped, the other finished
    result = ostinato("run", path, "--status-every", "0").finish()

    assert result.returncode == 0, result.stderr
    cause = "stopped by node 'parse' (onError: stopLoop): ValueError: bad input"
    assert result.table()["parser"]["REASON"].startswith(f"{cause}; drained 0"), result.stdout
    assert result.summaries()["parser"] == {
        "state": "stopped",
        "iterations": 3,
        "drained": 0,
        "abandoned": 0,
    }
    assert (
        "ostinato.cli: loop parser: stopped after 3 iteration(s); drained 0, abandoned 0 "
        f"non-blocking call(s); {cause}\n" in result.stderr
    ), result.stderr
