"""Event loops whose timers keep time to the microsecond, for every loop the runtime runs.

Why this module exists: on Linux asyncio waits in ``epoll_wait``, whose timeout is whole
milliseconds, and the selector rounds every wait up to the next millisecond. A timer (the
``call_later`` behind ``NodeContext.sleep_until`` and ``IntervalProducer``, or a node's own
``asyncio.sleep``) therefore fires 0-1 ms late, about 0.5 ms on average: more than half a
period at 1 kHz. bench/timing.py measured it: the same jitter on a bare event loop as in
every pool (p50 ~100 µs, p99 ~1 ms at 1 kHz, against ~5 µs and ~100 µs for ``time.sleep``).

The fix keeps the event loop as it is and changes only how it blocks: before ``epoll_wait``
the selector waits on the epoll descriptor itself with ``select()``, whose timeout has
microsecond resolution (and the kernel's usual timer slack, as ``time.sleep`` has). The epoll
descriptor is readable as soon as any registered file is ready, so I/O wakes the loop just as
before and nothing blocks; only the timeout gets precise. Costs one system call per wait that
ends in I/O (the ``select`` and then a non-blocking ``epoll_wait``); a wait that times out
costs one, as before.

Elsewhere (macOS and the BSDs use kqueue, whose timeouts are nanoseconds) and when the epoll
descriptor is beyond what ``select()`` can watch (FD_SETSIZE, 1024), the default selector's
behaviour is kept. ``OSTINATO_PRECISE_TIMERS=off`` keeps it everywhere, for a whole process tree
(process loops inherit it): a way back should the precise wait misbehave somewhere, and the
"before" of the A/B comparison in bench/timing.py.
"""

from __future__ import annotations

import asyncio
import select
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from ._env import env_switch

__all__ = [
    "PRECISE_TIMERS_ENV",
    "PreciseEpollSelector",
    "new_event_loop",
    "precise_timers_enabled",
    "run",
]

#: Environment variable that turns the precise timers off ("off"); "on" is the default.
PRECISE_TIMERS_ENV = "OSTINATO_PRECISE_TIMERS"

T = TypeVar("T")

#: The highest descriptor number ``select()`` can watch, plus one (glibc's FD_SETSIZE).
FD_SETSIZE = 1024

_EpollSelector: type[selectors.BaseSelector] | None = getattr(selectors, "EpollSelector", None)


if _EpollSelector is not None:

    class PreciseEpollSelector(selectors.EpollSelector):
        """An epoll selector whose finite timeouts are kept to the microsecond."""

        def __init__(self) -> None:
            super().__init__()
            fd = self.fileno()
            self._precise = fd < FD_SETSIZE
            self._watch = [fd]

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is not None and timeout > 0 and self._precise:
                # Interrupted by a signal, select() is retried with the time left (PEP 475).
                ready, _, _ = select.select(self._watch, (), (), timeout)
                if not ready:  # timed out: nothing is ready, epoll needs no asking
                    return []
                timeout = 0
            return super().select(timeout)

else:  # pragma: no cover - not Linux
    PreciseEpollSelector = None  # type: ignore[assignment,misc]


def precise_timers_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether new event loops get precise timers, from ``$OSTINATO_PRECISE_TIMERS`` (default
    on)."""
    return env_switch(PRECISE_TIMERS_ENV, environ)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: with :class:`PreciseEpollSelector` where the default selector is
    epoll (Linux) and precise timers are on, else asyncio's default."""
    if (
        precise_timers_enabled()
        and PreciseEpollSelector is not None
        and selectors.DefaultSelector is _EpollSelector
    ):
        return asyncio.SelectorEventLoop(PreciseEpollSelector())
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on an event loop from :func:`new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
