"""Nodes for hub end-to-end tests. They record what they see in files (one line per message,
line-buffered, appended) so loops in every pool, the process pool included, and replicas that
are killed with SIGKILL can be checked the same way from the test."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from ostinato import BlockingNode, NodeConfig, NodeData, ProducerExhausted, ProducerNode

from ..engine.nodes import read as read  # the journals' reader, shared


def wait_file(path: str, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def value_of(payload: Any) -> Any:
    """The sequence number in a payload: the payload itself, or the first item of [n, pad]."""
    return payload[0] if isinstance(payload, list) else payload


class GoConfig(NodeConfig):
    count: int = Field(ge=0, description="How many values: 0, 1, ..., count-1.")
    go: str | None = Field(None, description="A file to wait for before the first value.")
    pad: int = Field(0, ge=0, description="Emit [n, 'x' * pad] instead of n.")
    poll_seconds: float = 0.005


class GoCounter(ProducerNode[GoConfig]):
    """Counts 0..count-1 as fast as the loop runs, once the ``go`` file exists (so a test can
    get every reader subscribed, or paused, before the first message is written)."""

    def setup(self) -> None:
        self.n = 0
        self.padding = "x" * self.config.pad

    def ready(self) -> bool:
        return self.config.go is None or os.path.exists(self.config.go)

    async def produce(self) -> Any:
        cfg = self.config
        if self.n == 0 and not self.ready():
            await self.context.sleep_until(time.monotonic() + cfg.poll_seconds)
            return None  # no iteration yet; a pause or stop takes effect
        if self.n >= cfg.count:
            raise ProducerExhausted
        n = self.n
        self.n += 1
        return [n, self.padding] if cfg.pad else n


class SizesConfig(NodeConfig):
    sizes: list[int]


class Sizes(ProducerNode[SizesConfig]):
    """Emits [i, 'x' * size] for each size in turn, then ends."""

    def setup(self) -> None:
        self.i = 0

    def produce(self) -> Any:
        if self.i >= len(self.config.sizes):
            raise ProducerExhausted
        i = self.i
        self.i += 1
        return [i, "x" * self.config.sizes[i]]


class RecordConfig(NodeConfig):
    journal: str
    tag: str = "got"


class Record(BlockingNode[RecordConfig]):
    """Appends '<tag> <n> <message id> <redelivered 0/1> <pid>' per message, line-buffered so
    a SIGKILL loses nothing that was recorded."""

    def setup(self) -> None:
        self.f: IO[str] = open(self.config.journal, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.pid = os.getpid()

    def process(self, data: NodeData) -> NodeData:
        meta = data.meta
        self.f.write(
            f"{self.config.tag} {value_of(data.payload)} {meta.get('message_id')} "
            f"{int(bool(meta.get('redelivered')))} {self.pid}\n"
        )
        return data

    def teardown(self) -> None:
        self.f.close()


class HoldConfig(NodeConfig):
    claim: str = Field(description="Created (exclusively) by the one replica that holds.")
    release: str = Field(description="The holder waits for this file.")
    timeout: float = 30.0


class Hold(BlockingNode[HoldConfig]):
    """The first replica to get a message claims the ``claim`` file (writing its pid and the
    message) and blocks until ``release`` exists: that message stays delivered-unacknowledged
    while the test kills the replica. Every other call passes straight through."""

    def process(self, data: NodeData) -> NodeData:
        cfg = self.config
        try:
            fd = os.open(cfg.claim + ".tmp", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return data
        os.write(fd, f"{os.getpid()} {value_of(data.payload)}".encode())
        os.close(fd)
        os.rename(cfg.claim + ".tmp", cfg.claim)  # the test sees it complete or not at all
        wait_file(cfg.release, cfg.timeout, poll=0.01)
        return data


class SlowConfig(NodeConfig):
    seconds: float = Field(description="Sleep per call for the first `first` calls.")
    first: int = Field(description="How many calls are slow.")
    every: float = Field(0.0, description="Sleep per call after that.")


class Slow(BlockingNode[SlowConfig]):
    """A consumer that is slow at first (so a fast writer fills the queue), then keeps up."""

    def setup(self) -> None:
        self.calls = 0

    def process(self, data: NodeData) -> NodeData:
        self.calls += 1
        cfg = self.config
        delay = cfg.seconds if self.calls <= cfg.first else cfg.every
        if delay:
            time.sleep(delay)
        return data


class Remember(BlockingNode[NodeConfig]):
    """Keeps the current payload in the iteration's meta as 'first' (for a join of two queues)."""

    def process(self, data: NodeData) -> NodeData:
        data.meta["first"] = value_of(data.payload)
        return data


class RecordPair(BlockingNode[RecordConfig]):
    """Appends '<tag> <first> <n> <iteration> <trace id>' per iteration."""

    def setup(self) -> None:
        self.f: IO[str] = open(self.config.journal, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def process(self, data: NodeData) -> NodeData:
        self.f.write(
            f"{self.config.tag} {data.meta.get('first')} {value_of(data.payload)} "
            f"{data.iteration} {data.trace_id}\n"
        )
        return data

    def teardown(self) -> None:
        self.f.close()


class ListsConfig(NodeConfig):
    count: int = Field(ge=0, description="How many lists.")
    size: int = Field(ge=0, description="Items a list: list k is [k*size, ..., k*size+size-1].")
    go: str | None = Field(None, description="A file to wait for before the first list.")


class Lists(ProducerNode[ListsConfig]):
    """``count`` lists of ``size`` consecutive numbers, once the ``go`` file exists (the
    payload of a writer that splits its payload into messages)."""

    def setup(self) -> None:
        self.k = 0

    def ready(self) -> bool:
        return self.config.go is None or os.path.exists(self.config.go)

    async def produce(self) -> Any:
        cfg = self.config
        if self.k == 0 and not self.ready():
            await self.context.sleep_until(time.monotonic() + 0.005)
            return None
        if self.k >= cfg.count:
            raise ProducerExhausted
        k = self.k
        self.k += 1
        return list(range(k * cfg.size, (k + 1) * cfg.size))


class RecordBatchConfig(NodeConfig):
    journal: str
    fail_first: int = Field(0, description="The first this many batches fail after recording.")


class RecordBatch(BlockingNode[RecordBatchConfig]):
    """Appends '<tag> <n> <message id> <redelivered 0/1> <batch size> <iteration> <pid>' per
    message of a batch (tag 'failed' for a batch that then fails, else 'got')."""

    def setup(self) -> None:
        self.f: IO[str] = open(self.config.journal, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.pid = os.getpid()
        self.batches = 0

    def process(self, data: NodeData) -> NodeData:
        self.batches += 1
        fail = self.batches <= self.config.fail_first
        values, metas = data.payload, data.meta["messages"]
        assert len(values) == len(metas)
        tag = "failed" if fail else "got"
        self.f.write(
            "".join(
                f"{tag} {v} {m['message_id']} {int(m['redelivered'])} {len(values)} "
                f"{data.iteration} {self.pid}\n"
                for v, m in zip(values, metas, strict=True)
            )
        )
        if fail:
            raise RuntimeError(f"batch {self.batches} fails on purpose")
        return data

    def teardown(self) -> None:
        self.f.close()


class HoldOnce(BlockingNode[HoldConfig]):
    """Hold, but once in all replicas and restarts: the first call takes a lock file that is
    never removed, writes '<pid> <first value>' to ``claim`` and blocks until ``release``
    exists; every other call passes straight through. (Hold's own claim slot frees itself
    when it renames its temporary file, so a later call can claim again.)"""

    def process(self, data: NodeData) -> NodeData:
        cfg = self.config
        try:
            fd = os.open(cfg.claim + ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return data
        os.close(fd)
        Path(cfg.claim + ".tmp").write_text(f"{os.getpid()} {value_of(data.payload)}")
        os.rename(cfg.claim + ".tmp", cfg.claim)  # the test sees it complete or not at all
        wait_file(cfg.release, cfg.timeout, poll=0.01)
        return data
