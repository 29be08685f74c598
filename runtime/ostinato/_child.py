"""Process-pool loops, child side: the entry point of a loop's own process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import zmq

from ._control import Mailbox
from ._engine import LoopManager
from ._logs import configure_logging
from ._plan import load_workflow
from ._wire import WireError, decode, encode

log = logging.getLogger("ostinato.child")

#: How long a child waits for its configuration before it gives up, seconds.
CONFIG_TIMEOUT_SECONDS = 30.0


class _Channel:
    """The child's DEALER socket, owned by one thread: heartbeats out, control commands in."""

    def __init__(self, endpoint: str, identity: str) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, identity.encode())
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(endpoint)
        self.mailbox = Mailbox(self.ctx)
        self.parent = os.getppid()

    def handshake(self) -> dict[str, Any]:
        self.sock.send(encode("hello", pid=os.getpid()))
        if not self.sock.poll(int(CONFIG_TIMEOUT_SECONDS * 1000)):
            raise SystemExit(f"no configuration from {CONFIG_TIMEOUT_SECONDS:g}s; giving up")
        msg = decode(self.sock.recv())
        if msg["t"] != "config":
            raise SystemExit(f"expected a config message, got {msg['t']!r}")
        return msg

    def serve(self, manager: LoopManager, done: threading.Event, heartbeat: float) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.mailbox.receiver, zmq.POLLIN)
        while True:
            events = dict(poller.poll(int(heartbeat * 1000)))
            if self.mailbox.receiver in events:
                self.mailbox.take()
            if self.sock in events:
                self._commands(manager)
            final = done.is_set()
            status = manager.status().model_dump(mode="json")
            self.sock.send(encode("status", status=status, final=final))
            if final:
                return
            if os.getppid() != self.parent:
                log.warning("orchestrator went away: stopping")
                manager.stop()

    def _commands(self, manager: LoopManager) -> None:
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decode(frame)
            except WireError as exc:
                log.warning("dropped malformed control frame: %s", exc)
                continue
            cmd = msg.get("cmd") if msg["t"] == "control" else None
            if cmd == "pause":
                manager.pause()
            elif cmd == "resume":
                manager.resume()
            elif cmd == "stop":
                manager.stop()
            else:
                log.warning("ignored message %r", msg["t"])

    def close(self) -> None:
        self.mailbox.close()
        self.sock.close()
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ostinato._child")
    parser.add_argument("--connect", required=True)
    parser.add_argument("--identity", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop

    channel = _Channel(args.connect, args.identity)
    config = channel.handshake()
    for entry in reversed(config.get("sysPath") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    plan = load_workflow(json.loads(config["document"]))
    configure_logging(
        config.get("logFormat", "text"), int(config.get("logLevel", logging.INFO)), plan.name
    )
    loop_plan = plan.loop(config["loop"])
    manager = LoopManager(
        loop_plan,
        workflow=plan.name,
        max_iterations=config.get("maxIterations"),
        on_change=lambda _m: channel.mailbox.put(),
    )
    if config.get("desired") == "pause":
        manager.pause()
    elif config.get("desired") == "stop":
        manager.stop()
    signal.signal(signal.SIGTERM, lambda *_: manager.stop())

    done = threading.Event()
    server = threading.Thread(
        target=channel.serve,
        args=(manager, done, loop_plan.spec.heartbeat_seconds),
        name="ostinato-channel",
        daemon=True,
    )
    server.start()
    code = 0
    try:
        manager.run_sync()
    except Exception:
        code = 1  # logged by the manager; the orchestrator restarts us with backoff
    finally:
        done.set()
        channel.mailbox.put()
        server.join(timeout=10)
        channel.close()
    logging.shutdown()
    # Side-effect threads that outlived the drain timeout must not keep a stopped loop alive.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
