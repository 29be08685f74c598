"""A durable queue survives kill -9 of the hub: every acknowledged message is delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from ostinato._messaging._client import HubClient

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0

WORKFLOW = textwrap.dedent("""
    apiVersion: ostinato.dev/v1alpha1
    kind: Workflow
    metadata: {name: durable}
    spec:
      queues:
        - {name: events, mode: work, capacity: 100000, durable: true}
      loops:
        - name: writer
          producer: {name: count, class: CounterProducer}
          nodes:
            - {name: out, kind: blocking, queue: {write: events}}
        - name: reader
          producer: {name: in, queue: {read: events}}
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubProcess:
    def __init__(self, workflow: Path, state: Path, port: int) -> None:
        self.args = [
            sys.executable,
            "-m",
            "ostinato",
            "hub",
            str(workflow),
            "--bind",
            f"tcp://127.0.0.1:{port}",
            "--insecure",
            "--state-dir",
            str(state),
        ]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once the sockets are bound
        assert line.startswith("hub listening on"), line

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[HubProcess, str]]:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW)
    port = free_port()
    process = HubProcess(workflow, tmp_path / "state", port)
    process.start()
    try:
        yield process, f"tcp://127.0.0.1:{port}"
    finally:
        process.stop()


def write(client: HubClient, values: range) -> list[object]:
    meta = msgpack.packb({})
    return [client.put("events", msgpack.packb(v), meta) for v in values]


async def read_all(client: HubClient, expected: set[int]) -> dict[int, int]:
    """Take and acknowledge messages until every expected value came; value -> times seen."""
    inbox = client.subscribe("events", prefetch=200)
    seen: dict[int, int] = {}
    while not expected <= seen.keys():
        item = inbox.take()
        if item is None:
            await asyncio.wait_for(inbox.arrival(), WAIT)
            continue
        msg_id, payload, _meta, _redelivered = item
        value = msgpack.unpackb(payload)
        seen[value] = seen.get(value, 0) + 1
        client.ack("events", msg_id)
    return seen


def test_acknowledged_messages_survive_kill_9(hub: tuple[HubProcess, str]) -> None:
    process, endpoint = hub
    writer = HubClient(endpoint, b"writer/0/a", loop="writer", heartbeat=0.2)
    writer.start()
    try:
        for fut in write(writer, range(2000)):
            fut.result(WAIT)  # acknowledged: on disk at the hub
        process.kill()
        process.start()  # same state directory
        reader = HubClient(endpoint, b"reader/0/a", loop="reader", heartbeat=0.2)
        reader.start()
        try:
            seen = asyncio.run(read_all(reader, set(range(2000))))
        finally:
            reader.close()
    finally:
        writer.close()
    assert set(seen) == set(range(2000))


def test_a_kill_mid_stream_loses_nothing_the_writer_sent(
    hub: tuple[HubProcess, str],
) -> None:
    process, endpoint = hub
    writer = HubClient(endpoint, b"writer/0/b", loop="writer", heartbeat=0.2)
    writer.start()
    try:
        first = write(writer, range(3000))
        first[1000].result(WAIT)  # part acknowledged, part still travelling
        process.kill()
        done = threading.Event()
        restart = threading.Thread(target=lambda: (process.start(), done.set()))
        restart.start()
        rest = write(writer, range(3000, 4000))  # written while the hub is down
        restart.join(WAIT)
        assert done.is_set()
        for fut in first + rest:
            fut.result(WAIT)  # the writer resent what the dead hub never acknowledged
        reader = HubClient(endpoint, b"reader/0/b", loop="reader", heartbeat=0.2)
        reader.start()
        try:
            seen = asyncio.run(read_all(reader, set(range(4000))))
        finally:
            reader.close()
    finally:
        writer.close()
    assert set(seen) == set(range(4000))  # at least once: a redelivery may repeat one
