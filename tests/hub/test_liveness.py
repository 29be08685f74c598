"""Consumers the hub thinks are gone, and clients that go: what must survive a stall and an exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import zmq

import ostinato
from ostinato import LoopState
from ostinato._messaging._hub import Hub
from ostinato._messaging._wire import encode
from ostinato._model._spec import QueueSpec

from .conftest import (
    consumers,
    go,
    loop,
    node,
    queue,
    reader,
    start_writing,
    subscribed,
    until,
    values,
    workflow,
    writer,
)
from .nodes import read

RUNTIME = str(Path(ostinato.__file__).resolve().parent.parent)


@pytest.mark.slow
def test_a_reader_that_stalled_past_lost_after_receives_again(run: Any, tmp_path: Path) -> None:
    """Found by this suite: a consumer the hub declared lost (SIGSTOP, a long stall) was
    never subscribed again when it came back: it ran, reported 'running', and got nothing."""
    n = 5
    journal = tmp_path / "reader.log"
    doc = workflow(
        loop(
            "writer", "thread", node("p", "GoCounter", count=n, go=go(tmp_path)), writer("out", "q")
        ),
        loop(
            "reader",
            "process",
            reader("in", "q"),
            node("rec", "Record", "blocking", journal=str(journal)),
        ),
        queues=[queue("q")],
    )
    orch = run(doc)
    r = orch.loop("reader")
    assert subscribed(orch, "reader")
    pid = r.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        assert until(lambda: not consumers(orch, "reader"), timeout=15)  # the hub gave up on it
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.wait_for(lambda s: s.state is LoopState.RUNNING, 10)  # it reports again
    start_writing(go(tmp_path))
    assert orch.loop("writer").wait_for(lambda s: s.iterations == n, 10)  # all accepted
    assert until(lambda: len(read(journal)) >= n, timeout=4), (
        f"reader got {values(journal)}; hub: {orch.status().queues}"
    )


#: What ostinato._hosting._child.main does once its loop has ended: final status, close, os._exit.
EXITING_CHILD = """
import logging, os, sys
from ostinato._messaging._client import HubClient
client = HubClient(sys.argv[1], sys.argv[2].encode(), loop="x", heartbeat=0.1)
client.status = lambda: {"state": "stopped"}
client.start()
client.final = True
client.close(timeout=10)
logging.shutdown()
os._exit(0)
"""


def set_if_final(event: threading.Event, msg: dict[str, Any]) -> None:
    if msg.get("final"):
        event.set()


def test_a_child_that_exits_right_after_close_delivers_its_final_status() -> None:
    """Found by this suite: close() returned before the socket had sent its last frames and
    the child's os._exit() lost them (often): a stop took 5 s more, and a loop that ended by
    itself could be restarted as crashed."""
    children = 8  # at once: alone, each loses its last frames with p ~ 0.4; more when busy
    hub = Hub()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([RUNTIME, *sys.path])}
    finals = {f"child-{i}".encode(): threading.Event() for i in range(children)}
    try:
        for identity, final in finals.items():
            hub.register(identity, partial(set_if_final, final))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", EXITING_CHILD, hub.endpoint, identity.decode()], env=env
            )
            for identity in finals
        ]
        codes = [proc.wait(timeout=30) for proc in procs]
        assert codes == [0] * children
        # They have exited: what they sent is at the hub within moments, or it is lost.
        deadline = time.monotonic() + 2.0
        while not all(f.is_set() for f in finals.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        hub.close()
    lost = [identity.decode() for identity, final in finals.items() if not final.is_set()]
    assert lost == [], f"{len(lost)} of {children} children lost their final status"


def test_the_hub_forgets_peers_that_went_away() -> None:
    hub = Hub([QueueSpec.model_validate({"name": "q", "mode": "work"})], {}, lost_after=0.2)
    ctx = zmq.Context()
    try:
        for i in range(40):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(hub.endpoint)
            sock.send(encode("sub", q="q", loop="r", credit=1) if i % 2 else encode("ping"))
            sock.send(encode("ping"))
            assert sock.poll(5000)  # the pong: the hub has seen this peer
            sock.close()

        def remembered() -> int:
            return len(hub._seen) + len(hub._route) + len(hub._lost) + len(hub._consumers)

        assert until(lambda: remembered() == 0, timeout=3.0), (
            f"seen={len(hub._seen)} route={len(hub._route)} lost={len(hub._lost)} "
            f"consumers={len(hub._consumers)}"
        )
    finally:
        hub.close()
        ctx.term()
