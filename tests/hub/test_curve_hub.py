"""The hub over tcp:// with CURVE: the workflow's key reads and writes, any other key neither."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import msgpack
import pytest
import zmq

from ostinato._messaging._client import HubClient
from ostinato._messaging._hub import Hub
from ostinato._messaging._security import CurveKeys, ServerSecurity, generate_keys, load_keys
from ostinato._model._spec import QueueSpec

WAIT = 20.0
REPO = Path(__file__).resolve().parents[2]


def spec() -> QueueSpec:
    return QueueSpec.model_validate({"name": "q", "mode": "broadcast"})


async def first_message(client: HubClient, within: float) -> object:
    inbox = client.subscribe("q", prefetch=4)
    while (item := inbox.take()) is None:
        await asyncio.wait_for(inbox.arrival(), within)
    return msgpack.unpackb(item[1])


def test_only_the_workflows_client_key_can_write_and_read() -> None:
    keys = generate_keys()
    other = generate_keys()
    intruder_keys = CurveKeys(
        keys.server_public, keys.server_secret, other.client_public, other.client_secret
    )
    ctx: zmq.Context[object] = zmq.Context()
    security = ServerSecurity(ctx, keys)
    hub = Hub([spec()], {"q": ["reader"]}, ctx=ctx, tcp="tcp://127.0.0.1:0", security=security)
    assert hub.tcp is not None
    intruder = HubClient(hub.tcp, b"reader/9/x", loop="reader", keys=intruder_keys)
    writer = HubClient(hub.tcp, b"writer/0/x", loop="writer", keys=keys)
    reader = HubClient(hub.tcp, b"reader/0/x", loop="reader", keys=keys)
    try:
        intruder.start()
        refused = intruder.put("q", msgpack.packb("forged"), b"")
        with pytest.raises(FutureTimeout):
            refused.result(1.0)  # never acknowledged: the hub never saw it
        with pytest.raises(TimeoutError):
            asyncio.run(first_message(intruder, 1.0))
        assert hub.queue_status()["q"]["enqueued"] == 0
        assert security.rejected >= 1

        writer.start()
        reader.start()
        writer.put("q", msgpack.packb("hello"), b"").result(WAIT)
        assert asyncio.run(first_message(reader, WAIT)) == "hello"
        assert hub.queue_status()["q"]["enqueued"] == 1
    finally:
        for client in (intruder, writer, reader):
            client.close(timeout=2)
        hub.close()
        security.close()
        ctx.term()


def test_ostinato_keys_writes_a_loadable_key_file(tmp_path: Path) -> None:
    out = tmp_path / "wf.keys"
    run = subprocess.run(
        [sys.executable, "-m", "ostinato", "keys", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert load_keys(out).client_public
    assert out.stat().st_mode & 0o777 == 0o600
    again = subprocess.run(
        [sys.executable, "-m", "ostinato", "keys", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert again.returncode == 1  # never overwrites a workflow's keys


def test_hub_over_tcp_refuses_to_start_without_keys(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "apiVersion: ostinato.dev/v1alpha1\nkind: Workflow\nmetadata: {name: k}\n"
        "spec:\n  loops:\n    - {name: a, producer: {name: p, class: CounterProducer}}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "ostinato", "hub", str(wf), "--bind", "tcp://127.0.0.1:0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert run.returncode != 0
    assert "CURVE" in run.stderr
