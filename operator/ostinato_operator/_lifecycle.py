"""The process's phases - standby, active, stopping - so that a restart costs seconds: the main
thread takes SIGTERM/SIGINT itself and hands the Lease back before kopf (in a thread of its own)
stops, and the process is gone within ``shutdown_timeout_seconds`` whatever kopf is doing."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ._leader import LeaseHolder
from ._settings import OperatorSettings
from ._standby import StandbyHealth, lease_report

__all__ = ["Signals", "run"]

log = logging.getLogger("ostinato.operator")

SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: How often the main thread looks at the kopf thread and the Lease between two signals.
TICK_SECONDS = 0.2


class Signals:
    """SIGTERM and SIGINT blocked in every thread and taken by the main thread when it asks.

    Entered before any thread starts (threads inherit the mask), so no handler ever runs in the
    middle of a lock and kopf, its executors and the HTTP servers never see a signal.
    """

    def __enter__(self) -> Signals:
        self._previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._previous)

    def wait(self, seconds: float) -> signal.Signals | None:
        """Sleep up to ``seconds``; the signal that came meanwhile, if one did."""
        info = signal.sigtimedwait(SIGNALS, max(seconds, 0.0))
        return signal.Signals(info.si_signo) if info is not None else None


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()


def _exit_now(code: int, why: str) -> None:
    log.error("%s", why)
    _flush_logs()
    os._exit(code)


class _KopfIgnoresSignals(logging.Filter):
    """Drops kopf's warning that it ignores signals in a thread: on purpose, see Signals."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OS signals are ignored" not in record.getMessage()


def run(
    settings: OperatorSettings,
    signals: Signals,
    holder: LeaseHolder | None,
    run_kopf: Callable[[threading.Event], None],
) -> int:
    """Wait for the Lease (if any) answering /healthz, then run kopf until a signal, a lost
    Lease or kopf's own end. The exit status: 0 when told to stop, 1 otherwise."""
    if holder is not None and not _wait_for_lease(settings, signals, holder):
        return 0
    lost = threading.Event()
    if holder is not None:
        holder.keep(lost.set)
    stop = threading.Event()
    ended = threading.Event()
    failed: list[BaseException] = []

    def kopf_thread() -> None:
        try:
            run_kopf(stop)
        except BaseException as exc:
            failed.append(exc)
            log.exception("kopf failed")
        finally:
            ended.set()

    logging.getLogger("kopf._core.reactor.running").addFilter(_KopfIgnoresSignals())
    thread = threading.Thread(target=kopf_thread, name="kopf", daemon=True)
    thread.start()
    while True:
        signo = signals.wait(TICK_SECONDS)
        if signo is not None:
            _stop_on_signal(settings, signals, holder, stop, ended, signo)
            return 0
        if lost.is_set():
            log.error("lost the lease: stopping so a new replica can take over cleanly")
            _stop_kopf(settings, signals, stop, ended, time.monotonic())
            return 1
        if ended.is_set():
            log.error("kopf stopped by itself%s", ": exiting" if failed else " (unexpected)")
            if holder is not None:
                holder.release()
            return 1


def _wait_for_lease(settings: OperatorSettings, signals: Signals, holder: LeaseHolder) -> bool:
    """True once the Lease is ours; False when a signal came first (exit at once, nothing held)."""
    lease = f"{holder.namespace}/{holder.name}"
    health: StandbyHealth | None = None
    if settings.liveness_port:
        report = lease_report(
            holder=lambda: holder.last_holder,
            error=lambda: holder.last_error,
            last_attempt=lambda: holder.last_attempt,
            reads=lambda: holder.reads,
            lease=lease,
            # A wait loop alive reads the Lease every poll, each read bounded by the timeout.
            stale_seconds=3
            * (settings.lease_poll_seconds + settings.lease_request_timeout_seconds),
        )
        health = StandbyHealth("0.0.0.0", settings.liveness_port, report)
    got: list[signal.Signals] = []

    def wait(seconds: float) -> bool:
        signo = signals.wait(seconds)
        if signo is not None:
            got.append(signo)
        return signo is not None

    try:
        acquired = holder.acquire(wait, settings.lease_poll_seconds)
    finally:
        if health is not None:
            health.close()  # before kopf binds the same port
    if not acquired:
        log.info("%s while waiting for lease %s: exiting", got[0].name, lease)
    return acquired


def _stop_on_signal(
    settings: OperatorSettings,
    signals: Signals,
    holder: LeaseHolder | None,
    stop: threading.Event,
    ended: threading.Event,
    signo: signal.Signals,
) -> None:
    """Release the Lease, then stop kopf, all within the shutdown timeout from now."""
    started = time.monotonic()
    bound = settings.shutdown_timeout_seconds
    first = "releasing the lease, then stopping kopf" if holder else "stopping kopf"
    log.info("%s: %s; exiting within %.0f s", signo.name, first, bound)
    if holder is not None:
        # In a thread of its own: normally two quick requests, but a hung API server must not
        # keep kopf running past the bound.
        releaser = threading.Thread(target=holder.release, name="ostinato-release", daemon=True)
        releaser.start()
        while releaser.is_alive() and time.monotonic() - started < bound / 2:
            releaser.join(timeout=TICK_SECONDS / 10)
            _on_signal(signals, 0.0, signo)
    _stop_kopf(settings, signals, stop, ended, started, signo)


def _stop_kopf(
    settings: OperatorSettings,
    signals: Signals,
    stop: threading.Event,
    ended: threading.Event,
    started: float,
    signalled: signal.Signals | None = None,
) -> None:
    """Set kopf's stop flag and wait for it until the shutdown timeout from ``started``."""
    stop.set()
    bound = settings.shutdown_timeout_seconds
    deadline = started + bound
    # The last word, even during the interpreter's own exit (it joins executor threads then).
    watchdog = threading.Timer(
        max(deadline - time.monotonic(), 0.0),
        _exit_now,
        args=(1, f"not stopped within {bound:.0f} s: exiting anyway"),
    )
    watchdog.daemon = True
    watchdog.start()
    while not ended.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            _exit_now(1, f"kopf did not stop within {bound:.0f} s: exiting anyway")
        signalled = _on_signal(signals, min(TICK_SECONDS, left), signalled)
    log.info("stopped in %.1f s", time.monotonic() - started)


def _on_signal(
    signals: Signals, seconds: float, signalled: signal.Signals | None
) -> signal.Signals | None:
    """While stopping: a first signal changes nothing (we are stopping already), a second one
    exits at once. Returns the signal received so far."""
    signo = signals.wait(seconds)
    if signo is None:
        return signalled
    if signalled is not None:
        _exit_now(128 + signo, f"second signal ({signo.name}): exiting at once")
    log.info("%s: stopping already; a second signal exits at once", signo.name)
    return signo
