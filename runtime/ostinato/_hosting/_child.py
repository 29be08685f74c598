"""Process-pool loops, child side: the entry point of a loop's own process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from .._engine._loop import LoopManager
from .._messaging._client import HubClient
from .._model._plan import load_workflow
from .._model._spec import DesiredState
from .._observe._logs import configure_logging
from ._replica import attach

log = logging.getLogger("ostinato.child")

#: How long a child waits for its configuration before it gives up, seconds.
CONFIG_TIMEOUT_SECONDS = 30.0


def _watch_parent(manager: LoopManager, done: threading.Event, every: float) -> None:
    """An orphaned loop stops gracefully: its orchestrator is gone."""
    parent = os.getppid()
    while not done.wait(every):
        if os.getppid() != parent:
            log.warning("orchestrator went away: stopping")
            manager.stop()
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ostinato._hosting._child")
    parser.add_argument("--connect", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--loop", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    # JSON lines on stderr, always: the parent parses and re-emits them in its own format.
    configure_logging("json", logging.INFO, loop=args.loop)

    client = HubClient(args.connect, args.identity.encode(), loop=args.loop)
    config = client.handshake(CONFIG_TIMEOUT_SECONDS)
    for entry in reversed(config.get("sysPath") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    # Only this loop's classes: the parent checked the others, and importing them here would
    # only cost time (and run their modules' code) in a process that never uses them.
    plan = load_workflow(json.loads(config["document"]), import_loops=(args.loop,))
    configure_logging("json", int(config.get("logLevel", logging.INFO)), plan.name, loop=args.loop)
    loop_plan = plan.loop(args.loop)
    manager = LoopManager(
        loop_plan,
        workflow=plan.name,
        max_iterations=config.get("maxIterations"),
        hub=client,
        replica=int(config.get("replica", 0)),
    )
    attach(manager, client, desired=DesiredState(config["desired"]))
    signal.signal(signal.SIGTERM, lambda *_: manager.stop())
    client.heartbeat = loop_plan.spec.heartbeat_seconds
    client.start()
    done = threading.Event()
    threading.Thread(
        target=_watch_parent,
        args=(manager, done, loop_plan.spec.heartbeat_seconds),
        name="ostinato-parent-watch",
        daemon=True,
    ).start()
    code = 0
    try:
        manager.run_sync()
    except Exception:
        code = 1  # logged by the manager; the orchestrator restarts us with backoff
    finally:
        done.set()
        client.final = True
        client.close(timeout=10)
    logging.shutdown()
    # Side-effect threads that outlived the drain timeout must not keep a stopped loop alive.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
