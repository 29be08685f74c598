"""The event loops the runtime runs loops on: precise timers, and I/O still wakes them at once.

Precision itself is measured by bench/timing.py, not asserted here: these tests check what must
hold on any machine, however loaded: every pool runs on the precise selector, a wait with a
long timeout still ends as soon as a file is ready or another thread hands the loop work (which
is how pause and stop reach a sleeping producer), and a timer never fires early.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
import threading
from typing import Any

import pytest

from ostinato._engine._eventloop import (
    PRECISE_TIMERS_ENV,
    PreciseEpollSelector,
    new_event_loop,
    precise_timers_enabled,
)
from ostinato._engine._eventloop import run as run_precise

from .conftest import POOLS, loop, node, workflow
from .nodes import read

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the precise selector replaces epoll (Linux)"
)
#: Generous bound for what should happen at once; a loaded 2-core machine is slow.
PROMPT = 20.0
#: A timeout no test waits out: if a wait ends, something other than its timer ended it.
LONG = 3600.0


@linux_only
@pytest.mark.timeout(60)
def test_new_event_loops_use_the_precise_selector() -> None:
    loop_ = new_event_loop()
    try:
        assert isinstance(loop_._selector, PreciseEpollSelector)  # type: ignore[attr-defined]
    finally:
        loop_.close()

    async def selector() -> Any:
        return asyncio.get_running_loop()._selector  # type: ignore[attr-defined]

    assert isinstance(run_precise(selector()), PreciseEpollSelector)


@linux_only
@pytest.mark.timeout(120)
@pytest.mark.parametrize("pool", POOLS)
def test_every_pool_runs_its_loop_on_the_precise_selector(
    run: Any, journal: str, pool: str
) -> None:
    doc = workflow(
        loop(
            "main",
            pool,
            node("count", "Count", journal=journal, count=1),
            node("s", "AsyncSelector", "blocking", journal=journal, tag=pool),
        )
    )
    orch = run(doc)
    assert orch.wait(PROMPT)
    assert f"{pool} selector=PreciseEpollSelector" in read(journal)


@pytest.mark.timeout(60)
def test_a_thread_handing_work_over_wakes_a_long_wait() -> None:
    """call_soon_threadsafe (how pause and stop reach the loop) ends a wait at once."""

    async def main() -> bool:
        loop_ = asyncio.get_running_loop()
        woken = loop_.create_future()
        never = loop_.call_later(LONG, woken.set_result, False)
        ready = threading.Event()

        def other_thread() -> None:
            ready.wait(PROMPT)
            loop_.call_soon_threadsafe(woken.set_result, True)

        thread = threading.Thread(target=other_thread)
        thread.start()
        loop_.call_soon(ready.set)  # the other thread goes on as the loop turns to its wait
        try:
            return bool(await asyncio.wait_for(woken, PROMPT))
        finally:
            never.cancel()
            thread.join(PROMPT)

    assert run_precise(main()) is True


@pytest.mark.timeout(60)
def test_a_ready_socket_wakes_a_long_wait() -> None:
    async def main() -> bytes:
        loop_ = asyncio.get_running_loop()
        left, right = socket.socketpair()
        got: asyncio.Future[bytes] = loop_.create_future()
        never = loop_.call_later(LONG, got.set_result, b"timer")
        loop_.add_reader(left.fileno(), lambda: got.done() or got.set_result(left.recv(16)))
        writer = threading.Timer(0.0, right.send, (b"ping",))
        loop_.call_soon(writer.start)
        try:
            return await asyncio.wait_for(got, PROMPT)
        finally:
            never.cancel()
            loop_.remove_reader(left.fileno())
            writer.join(PROMPT)
            left.close()
            right.close()

    assert run_precise(main()) == b"ping"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("precise", [True, False], ids=["select", "fallback"])
def test_timers_never_fire_early(precise: bool) -> None:
    """Each timer's callback runs at or after its due time, in order; ``fallback`` is the
    plain epoll wait kept for an epoll descriptor beyond FD_SETSIZE."""
    if PreciseEpollSelector is None:  # pragma: no cover - not Linux
        pytest.skip("no epoll")
    selector = PreciseEpollSelector()
    selector._precise = precise
    loop_ = asyncio.SelectorEventLoop(selector)
    try:

        async def main() -> list[tuple[float, float]]:
            seen: list[tuple[float, float]] = []
            done = loop_.create_future()
            start = loop_.time()
            due = [start + k * 0.0007 for k in range(1, 30)]
            for when in due:
                loop_.call_at(when, lambda w=when: seen.append((w, loop_.time())))
            loop_.call_at(due[-1], lambda: done.set_result(None))
            await asyncio.wait_for(done, PROMPT)
            return seen

        seen = loop_.run_until_complete(main())
    finally:
        loop_.close()
    assert len(seen) == 29
    assert all(fired >= when for when, fired in seen), seen
    assert [w for w, _ in seen] == sorted(w for w, _ in seen)


@linux_only
@pytest.mark.timeout(60)
def test_an_epoll_descriptor_select_cannot_watch_keeps_the_plain_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ostinato._engine._eventloop as module

    monkeypatch.setattr(module, "FD_SETSIZE", 0)
    selector = module.PreciseEpollSelector()
    try:
        assert selector._precise is False
        assert selector.select(0.001) == []
    finally:
        selector.close()
    assert isinstance(selector, selectors.EpollSelector)


@pytest.mark.timeout(60)
def test_precise_timers_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert precise_timers_enabled({}) is True
    assert precise_timers_enabled({PRECISE_TIMERS_ENV: "OFF"}) is False
    with pytest.raises(ValueError, match=PRECISE_TIMERS_ENV):
        precise_timers_enabled({PRECISE_TIMERS_ENV: "sometimes"})
    monkeypatch.setenv(PRECISE_TIMERS_ENV, "off")
    loop_ = new_event_loop()
    try:
        assert not isinstance(loop_._selector, PreciseEpollSelector)  # type: ignore[attr-defined]
    finally:
        loop_.close()
