"""/healthz while a replica waits for the Lease: kopf's endpoint exists only once kopf runs, and a
standby the kubelet cannot probe is killed by its liveness probe and starts waiting over again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["StandbyHealth"]

log = logging.getLogger("ostinato.operator.standby")


class StandbyHealth:
    """GET /healthz -> 200 "standby: ..." while ``report()`` says the wait is alive, else 503;
    GET /healthz?probe=readiness -> 503 always (a standby is alive but not ready).

    ``report`` returns (alive, one line): the line names the Lease and who holds it, so
    `kubectl describe pod` (probe output) and `curl` explain why this replica is idle.
    """

    def __init__(self, addr: str, port: int, report: Callable[[], tuple[bool, str]]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/healthz":
                    self._answer(404, "not found: only /healthz here while on standby")
                    return
                try:
                    alive, line = outer.report()
                except Exception as exc:  # the probe must answer whatever happens
                    alive, line = False, f"standby: cannot tell ({type(exc).__name__}: {exc})"
                if alive and "readiness" in self.path.partition("?")[2]:
                    # The chart's readiness probe: a standby serves no webhook, so it is not
                    # Ready (kopf's endpoint ignores the query and answers 200 once active).
                    self._answer(503, line + " (not ready: not the active replica)")
                    return
                self._answer(200 if alive else 503, line)

            def _answer(self, status: int, text: str) -> None:
                body = (text + "\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("standby /healthz: " + format, *args)

        self.report = report
        self.server = ThreadingHTTPServer((addr, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="ostinato-standby-healthz",
            daemon=True,
        )
        self.thread.start()
        log.info("standby /healthz on %s:%d", addr, port)

    def close(self) -> None:
        """Stop answering and free the port (kopf binds the same one next)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def lease_report(
    holder: Callable[[], str | None],
    error: Callable[[], str | None],
    last_attempt: Callable[[], float],
    lease: str,
    stale_seconds: float,
    reads: Callable[[], int] = lambda: 1,
) -> Callable[[], tuple[bool, str]]:
    """The standby's answer: alive while its wait loop read (or tried to read) the Lease within
    ``stale_seconds``; the API server being away is no reason for a restart, a stuck loop is."""

    def report() -> tuple[bool, str]:
        age = time.monotonic() - last_attempt()
        if age > stale_seconds:
            return False, f"standby: lease {lease} not read for {age:.0f} s; the wait is stuck"
        if reads() == 0:  # the health server answers before the first read: say so, not "free"
            return True, f"standby: waiting for lease {lease}, not read yet"
        problem = error()
        if problem:
            return True, f"standby: waiting for lease {lease}; last read failed: {problem}"
        who = holder()
        if who:
            return True, f"standby: waiting for lease {lease}, held by {who}"
        return True, f"standby: waiting for lease {lease}, free: taking it"

    return report
