"""Process-pool loops, parent side: spawn a child per loop, watch it, restart it with backoff."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._messaging._hub import Hub
from .._messaging._wire import Kind
from .._model._plan import LoopPlan
from .._model._spec import DesiredState
from .._model._status import LoopState, LoopStatus, lost_reason
from .._observe._logs import relay_child_logs
from ._handles import LoopHandle
from ._replica import replica_identity

__all__ = ["ProcessLoop"]

log = logging.getLogger("ostinato.orchestrator")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ProcessLoop(LoopHandle):
    """A loop in a child process (``python -m ostinato._hosting._child``) of its own.

    The child is told everything through the control channel (the normalized document as
    JSON, never a pickle) and reports state and heartbeats back. A child that dies before it was
    told to stop is reported as ``error`` and restarted with exponential backoff.
    """

    def __init__(
        self,
        plan: LoopPlan,
        *,
        server: Hub,
        replica: int = 0,
        document: str,
        max_iterations: int | None,
        log_format: str = "text",
    ) -> None:
        super().__init__(plan, replica)
        self._server = server
        self._document = document
        self._max_iterations = max_iterations
        self._log_format = log_format
        self._cond = threading.Condition()
        self._status = LoopStatus(name=plan.name, replica=replica, pool=plan.spec.pool.value)
        self._desired = DesiredState.RUNNING
        self._stop = threading.Event()
        self._finished = False
        self._identity = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self._relay: threading.Thread | None = None
        self._restarts = 0
        self._final = False
        self._last_report: float | None = None
        #: Silence after which a running child is reported lost: three heartbeats.
        self._lost_after = 3 * plan.spec.heartbeat_seconds
        self._thread = threading.Thread(
            target=self._supervise, name=f"ostinato-supervise-{self.key}", daemon=True
        )

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def set_desired(self, state: DesiredState) -> None:
        """Kept for every process this loop has (a restarted child starts in it) and sent to
        the one it has now."""
        with self._cond:
            if self._desired is DesiredState.STOPPED:
                return
            self._desired = state
            identity = self._identity
        if identity:
            self._server.send(identity, Kind.CONTROL, state=state.value)
        if state is DesiredState.STOPPED:
            self._stop.set()

    def abort(self) -> None:
        """End the child now, without draining, and never restart it (a second Ctrl-C: no
        child may outlive the command that started it)."""
        self._stop.set()
        self.kill()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the child (for tests and for the operator's failure drills)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)

    # -- observation ---------------------------------------------------------------------------

    def status(self) -> LoopStatus:
        """The child's last report, with the desired state asked of this handle (known here
        before the child hears it); a child that stopped reporting (hung, stopped by a
        signal) is shown as ``error`` with reason "lost" until it reports again."""
        with self._cond:
            status, last, desired = self._status, self._last_report, self._desired
        update: dict[str, Any] = {"desired_state": desired}
        if last is not None and status.state in (LoopState.RUNNING, LoopState.PAUSED):
            silent = time.monotonic() - last
            if silent > self._lost_after:
                update["state"] = LoopState.ERROR
                update["reason"] = lost_reason(silent)
        return status.model_copy(update=update)

    @property
    def done(self) -> bool:
        return self._finished

    def wait_for(self, predicate: Callable[[LoopStatus], bool], timeout: float) -> bool:
        """Checked at every report from the child, and every 50 ms for silence (lost)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.status()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def _update(self, **changes: Any) -> None:
        with self._cond:
            self._status = self._status.model_copy(update=changes)
            self._cond.notify_all()

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == Kind.HELLO:
            with self._cond:
                desired = self._desired
            self._server.send(
                self._identity,
                Kind.CONFIG,
                document=self._document,
                loop=self.name,
                replica=self.replica,
                desired=desired.value,
                maxIterations=self._max_iterations,
                sysPath=sys.path,
                logFormat=self._log_format,
                logLevel=logging.getLogger("ostinato").getEffectiveLevel(),
            )
        elif kind == Kind.STATUS:
            reported = LoopStatus.model_validate(msg["status"])
            with self._cond:
                self._last_report = time.monotonic()
                self._status = reported.model_copy(
                    update={"restarts": self._restarts, "pid": self._status.pid}
                )
                self._final = bool(msg.get("final"))
                self._cond.notify_all()

    # -- supervision ---------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._final = False
        self._last_report = None
        self._identity = replica_identity(self.name, self.replica)
        self._server.register(self._identity, self._on_message)
        cmd = [
            sys.executable,
            "-m",
            "ostinato._hosting._child",
            "--connect",
            self._server.endpoint,
            "--identity",
            self._identity.decode(),
            "--loop",
            self.name,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # The child logs JSON lines to stderr; a thread re-emits them through this process's
        # handlers (ostinato._observe._logs), so they come out in its format, attributed to
        # the loop.
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        self._relay = threading.Thread(
            target=relay_child_logs,
            args=(proc.stderr, self.name, self.replica),
            name=f"ostinato-logs-{self.key}",
            daemon=True,
        )
        self._relay.start()
        return proc

    def _supervise(self) -> None:
        spec = self.plan.spec.restart
        crashes = 0
        while True:
            started = time.monotonic()
            self._proc = proc = self._spawn()
            self._update(
                pid=proc.pid, restarts=self._restarts, state=LoopState.PENDING, reason="starting"
            )
            code = proc.wait()
            if self._relay is not None:  # its last lines (a traceback) before our verdict
                self._relay.join(timeout=5)
            with self._cond:
                if code == 0:  # a clean exit sent its final status: wait for it to arrive
                    self._cond.wait_for(lambda: self._final, timeout=5)
                self._server.unregister(self._identity)
                self._server.peer_gone(self._identity)  # its unacknowledged messages go back
                self._identity = b""
                last = self._status
            if code == 0:  # the child exits 0 only once its loop has ended: not a crash
                if not self._final:
                    log.warning("loop %r: its final status did not arrive", self.key)
                # The child's own verdict: finished (its limit, its producer) or stopped.
                ended = LoopState.FINISHED if last.state is LoopState.FINISHED else None
                self._update(state=ended or LoopState.STOPPED, pid=None)
                break
            if time.monotonic() - started >= spec.reset_after_seconds:
                crashes = 0
            crashes += 1
            delay = min(spec.initial_backoff_seconds * 2 ** (crashes - 1), spec.max_backoff_seconds)
            why = describe_exit(code)
            log.error("loop %r: process %s; restarting in %.1fs", self.name, why, delay)
            self._update(
                state=LoopState.ERROR,
                reason=f"process {why}; restarting in {delay:.1f}s",
                last_error=last.last_error or f"process {why}",
                pid=None,
            )
            if self._stop.wait(delay):
                # Its last process failed and none replaced it: it ends in error, as a thread
                # loop whose setup fails does (ostinato run exits 1), not as a clean stop.
                self._update(state=LoopState.ERROR, reason=f"stopped while down: the process {why}")
                break
            self._restarts += 1
        with self._cond:
            self._finished = True
            self._cond.notify_all()
