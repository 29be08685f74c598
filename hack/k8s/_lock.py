"""Machine-wide locks that name their holder, wait a stated time, never deadlock on themselves."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from hack.k8s._util import cmdline

__all__ = ["LockBusyError", "LockReenteredError", "holder", "machine_lock"]

# Paths this process holds now -> what for. flock() refuses a second open file description of
# the same file even within one process, so a nested acquisition would wait on itself forever.
_held: dict[str, str] = {}
_held_guard = threading.Lock()


class LockBusyError(TimeoutError):
    """Another process held the lock for longer than we were told to wait; names that process."""


class LockReenteredError(RuntimeError):
    """This process already holds the lock: waiting would be a deadlock with ourselves."""


def holder(path: Path) -> str:
    """Who holds `path` as recorded in it: 'PID 123 (python -m pytest ...) for <what>'."""
    try:
        record = json.loads(path.read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process (no holder recorded)"
    argv = cmdline(pid)
    command = " ".join(" ".join(argv).split())[:200] if argv else "no longer running"
    return f"PID {pid} ({command}) for {record.get('what', '?')}"


@contextlib.contextmanager
def machine_lock(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold `path` exclusively across processes for the `with` block; released on every exit.

    Waits at most `timeout` seconds for another process (LockBusyError names it); a second
    acquisition inside this process raises LockReenteredError at once.
    """
    key = str(path)
    with _held_guard:
        if key in _held:
            raise LockReenteredError(
                f"{path}: already held by this process (PID {os.getpid()}) for {_held[key]}; "
                f"taking it again for {what} would wait on itself"
            )
        _held[key] = what
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _acquire(fd, path, timeout, what)
            try:
                record = {"pid": os.getpid(), "what": what, "since": time.time()}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(record).encode(), 0)
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        with _held_guard:
            _held.pop(key, None)


def _acquire(fd: int, path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockBusyError(
                    f"{path}: not free within {timeout:g} s for {what}; held by {holder(path)}"
                ) from None
            if not told:
                print(
                    f"waiting up to {timeout:g} s for {path}, held by {holder(path)}",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(0.2)
