"""The live view of `ostinato run` on a terminal: a status table redrawn in place, logs above it.

Plain ANSI control sequences (cursor up, erase below) rather than the ``rich`` library: the
view is one table of short rows, which needs three escape codes, and the runtime image stays
free of a dependency used only by people watching a terminal.

While the view runs, the ``ostinato`` log handler writes into :attr:`LiveView.log_stream`
(when stderr is the same terminal), so log lines are printed above the table instead of
tearing it: each redraw erases the table, prints the lines logged since the last one, and
draws the table again below them.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from .._model._status import LoopState, NodeHealth, WorkflowStatus, replica_key
from ._http import IterationRates

__all__ = ["LiveView", "render", "wants_live_view"]

log = logging.getLogger("ostinato.cli")

#: How often the table is redrawn when nothing is logged, seconds: once a second is what the
#: iteration rates change at (they are sampled once a second).
REFRESH_SECONDS = 1.0
#: Shortest time between two redraws when log lines arrive, seconds: at most 10 a second.
MIN_REDRAW_SECONDS = 0.1
#: The iteration rate's window, seconds: shorter than /status's 10 s so the view reacts.
RATE_WINDOW_SECONDS = 5.0

_UP = "\x1b[{}F"  # cursor to the start of the line N lines up
_ERASE_BELOW = "\x1b[J"
_STATE_COLOURS = {
    LoopState.RUNNING: "\x1b[32m",
    LoopState.PAUSED: "\x1b[33m",
    LoopState.STOPPING: "\x1b[33m",
    LoopState.ERROR: "\x1b[31;1m",
    LoopState.PENDING: "\x1b[36m",
}
_RESET = "\x1b[0m"


def wants_live_view(mode: str, stdout: IO[str]) -> bool:
    """``--live auto`` means: when stdout is a terminal."""
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"--live {mode!r}: expected auto, always or never")
    return mode == "always" or (mode == "auto" and stdout.isatty())


def _table(rows: list[list[str]], colours: dict[tuple[int, int], str] | None = None) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for y, row in enumerate(rows):
        cells = []
        for x, (cell, width) in enumerate(zip(row, widths, strict=True)):
            text = cell.ljust(width)
            colour = (colours or {}).get((y, x))
            cells.append(f"{colour}{text}{_RESET}" if colour else text)
        out.append("  ".join(cells).rstrip())
    return out


def render(
    status: WorkflowStatus,
    rates: dict[tuple[str, int], float | None],
    *,
    elapsed: float,
    colour: bool = True,
) -> list[str]:
    """The view's lines: loops with state and rate, failing nodes, queue depths."""
    lines = [f"workflow {status.workflow}: {len(status.loops)} loop(s), up {elapsed:.0f}s"]
    rows = [["LOOP", "POOL", "STATE", "IT/S", "ITERATIONS", "FAILED", "REASON"]]
    colours: dict[tuple[int, int], str] = {}
    for lp in status.loops:
        rate = rates.get((lp.name, lp.replica))
        rows.append(
            [
                replica_key(lp.name, lp.replica),
                lp.pool,
                lp.state.value,
                "-" if rate is None else f"{rate:.1f}",
                str(lp.iterations),
                str(lp.failed_iterations),
                lp.reason or "",
            ]
        )
        if colour and lp.state in _STATE_COLOURS:
            colours[(len(rows) - 1, 2)] = _STATE_COLOURS[lp.state]
    lines += _table(rows, colours)
    failing = [
        [
            f"{replica_key(lp.name, lp.replica)}/{n.name}",
            n.health.value,
            str(n.errors),
            (n.last_error or "").splitlines()[0][:100] if n.last_error else "",
        ]
        for lp in status.loops
        for n in lp.nodes
        if n.health is not NodeHealth.HEALTHY
    ]
    if failing:
        lines.append("")
        lines += _table([["NODE", "HEALTH", "ERRORS", "LAST ERROR"], *failing])
    if status.queues:
        lines.append("")
        lines += _table(
            [
                ["QUEUE", "DEPTH", "ENQUEUED", "DELIVERED", "DROPPED", "REDELIVERED"],
                *[
                    [
                        q.name,
                        str(q.depth),
                        str(q.enqueued),
                        str(q.delivered),
                        str(q.dropped),
                        str(q.redelivered),
                    ]
                    for q in status.queues
                ],
            ]
        )
    return lines


class _LogStream:
    """What the log handler writes to while the view runs: lines wait for the next redraw."""

    def __init__(self, view: LiveView) -> None:
        self._view = view

    def write(self, text: str) -> int:
        self._view._add_log(text)
        return len(text)

    def flush(self) -> None:
        pass


class LiveView:
    """Redraws ``status()`` as a table on ``out`` (a terminal) until :meth:`close`."""

    def __init__(
        self,
        status: Callable[[], WorkflowStatus],
        out: IO[str] | None = None,
        *,
        refresh: float = REFRESH_SECONDS,
    ) -> None:
        self._status = status
        self._out = sys.stdout if out is None else out
        self._refresh = refresh
        self._rates = IterationRates(RATE_WINDOW_SECONDS, min(refresh, RATE_WINDOW_SECONDS))
        self._cond = threading.Condition()
        self._logs: list[str] = []
        self._drawn = 0  # lines of the table now on screen
        self._sampled = float("-inf")  # when the rates were last sampled
        self._closed = False
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ostinato-live", daemon=True)
        self._handlers: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []
        self.log_stream = _LogStream(self)

    def start(self) -> LiveView:
        """Start redrawing; take over the ``ostinato`` log handlers that write to this
        terminal (stderr, when it is a terminal too)."""
        for handler in logging.getLogger("ostinato").handlers:
            if isinstance(handler, logging.StreamHandler) and _same_terminal(
                handler.stream, self._out
            ):
                self._handlers.append((handler, handler.stream))
                handler.setStream(self.log_stream)
        self._thread.start()
        return self

    def close(self, final: WorkflowStatus | None = None) -> None:
        """Stop redrawing; draw ``final`` (or the last status) once more and leave it there;
        give the log handlers their stream back."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._draw(final)
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()

    def _add_log(self, text: str) -> None:
        with self._cond:
            self._logs.append(text)
            self._cond.notify_all()

    def _run(self) -> None:
        last = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._logs), self._refresh)
                if self._closed:
                    return
            # Log lines arriving in a burst share one redraw.
            pause = last + MIN_REDRAW_SECONDS - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                self._draw(None)
            except Exception:  # a status read racing a stop must not end the view
                log.debug("live view: redraw failed", exc_info=True)
            last = time.monotonic()

    def _draw(self, final: WorkflowStatus | None) -> None:
        status = final if final is not None else self._status()
        now = time.monotonic()
        if now - self._sampled >= self._rates.sample_every or final is not None:
            # Not at every redraw: log lines may bring ten a second, and the rates keep a
            # bounded number of samples, which must span their window.
            self._rates.sample(status, now)
            self._sampled = now
        rates = {
            (lp.name, lp.replica): self._rates.rate(lp.name, lp.replica, lp.iterations, now)[0]
            for lp in status.loops
        }
        width = shutil.get_terminal_size((120, 24)).columns
        table = [_clip(line, width) for line in render(status, rates, elapsed=now - self._started)]
        with self._cond:
            logs, self._logs = self._logs, []
            parts = []
            if self._drawn:
                parts.append(_UP.format(self._drawn) + _ERASE_BELOW)
            parts.extend(logs)
            parts.append("\n".join(table) + "\n")
            self._drawn = len(table)
            self._out.write("".join(parts))
            self._out.flush()


def _clip(line: str, width: int) -> str:
    """Cut a table line to the terminal's width (a wrapped line would break the redraw's
    line count); colour codes do not take up columns."""
    visible = 0
    out = []
    i = 0
    while i < len(line):
        if line[i] == "\x1b":
            end = line.index("m", i) + 1
            out.append(line[i:end])
            i = end
            continue
        if visible >= width - 1:
            out.append(_RESET)
            break
        out.append(line[i])
        visible += 1
        i += 1
    return "".join(out)


def _same_terminal(a: IO[str], b: IO[str]) -> bool:
    try:
        return os.path.samefile(os.ttyname(a.fileno()), os.ttyname(b.fileno()))
    except (AttributeError, ValueError, OSError):  # not a file, closed, or not a terminal
        return False
