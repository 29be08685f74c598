"""The control channel drops malformed frames, counts them, and keeps serving."""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import msgpack
import zmq

from ostinato._messaging._hub import Hub as ControlServer
from ostinato._messaging._wire import VERSION, decode, encode


def test_malformed_frames_are_dropped_counted_and_the_server_keeps_serving() -> None:
    server = ControlServer()
    received: list[dict[str, Any]] = []
    got = threading.Event()

    def handler(msg: dict[str, Any]) -> None:
        received.append(msg)
        got.set()

    server.register(b"good", handler)
    end = threading.Event()
    server.register(b"bad", lambda msg: end.set() if msg["t"] == "ping" else None)
    ctx = zmq.Context()
    try:
        bad = ctx.socket(zmq.DEALER)
        bad.setsockopt(zmq.IDENTITY, b"bad")
        bad.connect(server.endpoint)
        rng = random.Random(7)
        frames = (
            [
                b"",
                b"\xc1",  # never valid msgpack
                msgpack.packb([1, 2, 3]),
                msgpack.packb({"v": 99, "t": "hello"}),
                msgpack.packb({"v": VERSION}),
                encode("hello")[:-1],  # truncated
            ]
            + [os.urandom(rng.randint(1, 200)) for _ in range(300)]
        )
        for frame in frames:
            bad.send(frame)
        bad.send_multipart([b"two", b"frames"])
        bad.send(encode("ping"))  # frames from one peer arrive in order: this one comes last
        good = ctx.socket(zmq.DEALER)
        good.setsockopt(zmq.IDENTITY, b"good")
        good.connect(server.endpoint)
        good.send(encode("hello", pid=1, loop="good"))
        assert got.wait(10)
        assert received[0]["t"] == "hello"
        server.send(b"good", "control", state="paused")
        assert good.poll(10_000)
        assert decode(good.recv()) == {"v": VERSION, "t": "control", "state": "paused"}
        assert end.wait(10)
        # Every bad frame was counted (random bytes decode as a valid envelope only by luck).
        assert server.malformed >= len(frames) - 5
    finally:
        ctx.destroy(linger=0)
        server.close()
