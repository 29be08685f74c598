"""The soak workload's nodes: a writer stamps each message with its incarnation and a sequence
number and records what the hub acknowledged; a reader records every message it receives.

Imported in the loops' processes (loop pods included), so it needs only the runtime and the
standard library. The workflow that uses them is built by ``soak.workload``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ostinato import BlockingNode, NodeConfig, NodeData

from .records import ReaderRecorder, WriterRecorder

__all__ = ["Acked", "Receipt", "RecordsConfig", "Stamp", "StampConfig"]

#: The writer incarnations of this process, by incarnation: Stamp opens one, Acked (a later
#: node of the same loop) finds it from the payload's ``w``.
_writers: dict[str, WriterRecorder] = {}


class RecordsConfig(NodeConfig):
    records_dir: str = Field(description="Directory of the record files (made if missing).")


class StampConfig(RecordsConfig):
    pad_bytes: int = Field(
        64, ge=0, le=65536, description="Filler carried by each message, in bytes."
    )


class Stamp(BlockingNode[StampConfig]):
    """Turns a tick into a message {w: incarnation, s: sequence number, t: time, p: filler};
    records the sequence number as written before the queue writers send it."""

    run_inline = True

    def setup(self) -> None:
        self.recorder = WriterRecorder(Path(self.config.records_dir), self.context.loop)
        self.incarnation = self.recorder.identity.incarnation
        _writers[self.incarnation] = self.recorder
        self.seq = 0
        self.pad = b"x" * self.config.pad_bytes

    def process(self, data: NodeData) -> dict[str, Any]:
        self.seq += 1
        now = time.time()
        self.recorder.written(self.seq, now)
        return {"w": self.incarnation, "s": self.seq, "t": now, "p": self.pad}

    def teardown(self) -> None:
        _writers.pop(self.incarnation, None)
        self.recorder.close()


class Acked(BlockingNode[NodeConfig]):
    """After the loop's blocking queue writers: the hub acknowledged the message on every queue
    the loop writes, so record its sequence number as acknowledged."""

    run_inline = True

    def process(self, data: NodeData) -> NodeData:
        payload = data.payload
        _writers[payload["w"]].acked(payload["s"], time.time())
        return data


class Receipt(BlockingNode[RecordsConfig]):
    """A reading loop's first node: records the message, queue and hub metadata included,
    before the iteration ends (and so before the hub hears it was taken)."""

    run_inline = True

    def setup(self) -> None:
        self.recorder = ReaderRecorder(Path(self.config.records_dir), self.context.loop)

    def process(self, data: NodeData) -> NodeData:
        payload, meta = data.payload, data.meta
        self.recorder.received(
            str(meta["queue"]),
            str(payload["w"]),
            int(payload["s"]),
            int(meta["message_id"]),
            bool(meta.get("redelivered")),
            float(payload["t"]),
            time.time(),
        )
        return data

    def teardown(self) -> None:
        self.recorder.close()
