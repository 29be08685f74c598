"""Journaling nodes for engine tests: they append what happens to a file, so every pool (the
process pool included) can be checked the same way after the loop has stopped."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from pydantic import Field

from ostinato import (
    BlockingNode,
    NodeConfig,
    NodeData,
    NonBlockingNode,
    ProducerExhausted,
    ProducerNode,
)

#: Gates a test can open for nodes running in its own process (thread and asyncio pools).
GATES: dict[str, threading.Event] = {}


def write(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read(path: str | Path) -> list[str]:
    """The complete lines of a journal: a line another process is appending may be read
    half-written (a write is not atomic for a reader), so a last line without its newline
    is left for the next read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return text[: text.rfind("\n") + 1].splitlines()


def wait_line(path: str, line: str, timeout: float) -> bool:
    """Wait until ``line`` is in the journal (polling a file: works across processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in read(path):
            return True
        time.sleep(0.005)
    return False


class JournalConfig(NodeConfig):
    journal: str
    tag: str = "node"
    count: int | None = None
    fail_on: list[int] = Field(default_factory=list, description="Iterations that raise.")
    fail_times: int = Field(0, description="The first N calls raise (for retries).")
    wait_for: str | None = Field(None, description="A journal line to wait for, then finish.")
    wait_timeout: float = 20.0
    gate: str | None = Field(None, description="Name of a GATES event to wait for.")
    hold_seconds: float = 0.0


class Count(ProducerNode[JournalConfig]):
    def setup(self) -> None:
        self.n = 0
        write(self.config.journal, f"{self.config.tag} setup")

    def produce(self) -> int:
        if self.config.count is not None and self.n >= self.config.count:
            raise ProducerExhausted
        self.n += 1
        if self.n in self.config.fail_on:
            write(self.config.journal, f"{self.config.tag} fail {self.n}")
            raise RuntimeError(f"producer failure at {self.n}")
        write(self.config.journal, f"{self.config.tag} {self.n}")
        return self.n

    def teardown(self) -> None:
        write(self.config.journal, f"{self.config.tag} teardown")


class AsyncCount(Count):
    async def produce(self) -> int:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().produce()


def _behave(node: Step | Effect, data: NodeData) -> None:
    cfg = node.config
    node.calls += 1
    if node.calls <= cfg.fail_times:
        write(cfg.journal, f"{cfg.tag} fail {data.iteration}")
        raise RuntimeError(f"{cfg.tag}: planned failure {node.calls}")
    if data.iteration in cfg.fail_on:
        write(cfg.journal, f"{cfg.tag} fail {data.iteration}")
        raise ValueError(f"{cfg.tag}: failure at iteration {data.iteration}")


class Step(BlockingNode[JournalConfig]):
    """Records start and end of each call; returns the payload plus one step in a list."""

    def setup(self) -> None:
        self.calls = 0
        write(self.config.journal, f"{self.config.tag} setup")

    def process(self, data: NodeData) -> NodeData:
        cfg = self.config
        write(cfg.journal, f"{cfg.tag} start {data.iteration}")
        _behave(self, data)
        if cfg.gate is not None:
            GATES[cfg.gate].wait(cfg.wait_timeout)
        write(cfg.journal, f"{cfg.tag} end {data.iteration} payload={data.payload}")
        return data

    def teardown(self) -> None:
        write(self.config.journal, f"{self.config.tag} teardown calls={self.calls}")


class AsyncStep(Step):
    async def process(self, data: NodeData) -> NodeData:  # type: ignore[override]
        cfg = self.config
        write(cfg.journal, f"{cfg.tag} start {data.iteration}")
        await asyncio.sleep(0)
        _behave(self, data)
        write(cfg.journal, f"{cfg.tag} end {data.iteration} payload={data.payload}")
        return data


class Tag(BlockingNode[JournalConfig]):
    """Returns a bare value: the next node must receive it as payload, same metadata."""

    def process(self, data: NodeData) -> str:
        return f"{self.config.tag}({data.payload})"


class Effect(NonBlockingNode[JournalConfig]):
    """A side effect that may wait for a journal line; records the highest concurrency seen."""

    def setup(self) -> None:
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        write(self.config.journal, f"{self.config.tag} setup")

    def process(self, data: NodeData) -> None:
        cfg = self.config
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            write(cfg.journal, f"{cfg.tag} start {data.iteration}")
            _behave(self, data)
            if cfg.wait_for is not None:
                wait_line(cfg.journal, cfg.wait_for, cfg.wait_timeout)
            if cfg.gate is not None:
                GATES[cfg.gate].wait(cfg.wait_timeout)
            if cfg.hold_seconds:
                time.sleep(cfg.hold_seconds)  # the side effect's own work
            write(cfg.journal, f"{cfg.tag} end {data.iteration}")
        finally:
            with self.lock:
                self.running -= 1

    def teardown(self) -> None:
        write(self.config.journal, f"{self.config.tag} teardown peak={self.peak}")


class AsyncEffect(Effect):
    async def process(self, data: NodeData) -> None:  # type: ignore[override]
        cfg = self.config
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            write(cfg.journal, f"{cfg.tag} start {data.iteration}")
            _behave(self, data)
            if cfg.wait_for is not None:  # the journal is a file another process may write
                deadline = time.monotonic() + cfg.wait_timeout
                while cfg.wait_for not in read(cfg.journal) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            if cfg.hold_seconds:
                await asyncio.sleep(cfg.hold_seconds)
            write(cfg.journal, f"{cfg.tag} end {data.iteration}")
        finally:
            self.running -= 1


class CrashConfig(NodeConfig):
    at: int = Field(description="Iteration at which to crash.")
    how: str = Field("exit", description="exit (os._exit), kill (SIGKILL self) or raise.")
    marker: str = Field(description="File created on the first crash so a restart runs clean.")


class Crash(BlockingNode[CrashConfig]):
    def process(self, data: NodeData) -> NodeData:
        cfg = self.config
        if data.iteration >= cfg.at and not os.path.exists(cfg.marker):
            Path(cfg.marker).write_text("crashed")
            if cfg.how == "exit":
                os._exit(3)
            if cfg.how == "kill":
                os.kill(os.getpid(), 9)
        return data


class BadSetup(BlockingNode[JournalConfig]):
    def setup(self) -> None:
        write(self.config.journal, f"{self.config.tag} setup-failed")
        raise RuntimeError("cannot open the device")

    def process(self, data: NodeData) -> NodeData:
        return data


class WhereConfig(NodeConfig):
    journal: str
    tag: str = "where"


class Where(BlockingNode[WhereConfig]):
    """Records the process, the thread, and whether an event loop runs in that thread."""

    def process(self, data: NodeData) -> NodeData:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        write(
            self.config.journal,
            f"{self.config.tag} pid={os.getpid()} thread={threading.current_thread().name} "
            f"on_event_loop={on_loop}",
        )
        return data


class AsyncWhere(Where):
    async def process(self, data: NodeData) -> NodeData:  # type: ignore[override]
        write(
            self.config.journal,
            f"{self.config.tag} pid={os.getpid()} thread={threading.current_thread().name} "
            "on_event_loop=True",
        )
        return data


class AsyncSelector(Where):
    """Records which selector the event loop the node is awaited on waits with."""

    async def process(self, data: NodeData) -> NodeData:  # type: ignore[override]
        selector = getattr(asyncio.get_running_loop(), "_selector", None)
        write(self.config.journal, f"{self.config.tag} selector={type(selector).__name__}")
        return data
