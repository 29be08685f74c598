"""Process and port chores shared by the control plane and the cluster: start, wait, stop by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice, so parallel runs differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    check: Callable[[], None] | None = None,
) -> T:
    """Call `probe` until it returns something other than None, or raise TimeoutError.

    `check` runs between probes and may raise to give up early (a process that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if check is not None:
            check()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def start_process(
    argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a daemon with its output in `log`, in its own session so Ctrl-C reaches only us."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie child of ours is reaped and counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _state(pid) not in ("Z", None)
    return reaped == 0


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_pids(pids: Sequence[int], grace: float) -> None:
    """SIGTERM every PID, wait up to `grace` seconds, then SIGKILL the ones still running."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = [p for p in pids if is_alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [p for p in remaining if is_alive(p)]
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [p for p in remaining if is_alive(p)]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def write_pid_file(
    path: Path, owner: int, processes: Mapping[str, subprocess.Popen[bytes]]
) -> None:
    """Record who started what, so a later run can clean up after a crash."""
    record = {
        "owner": owner,
        "processes": [
            {"name": name, "pid": proc.pid, "argv0": str(proc.args[0])}  # type: ignore[index]
            for name, proc in processes.items()
        ],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def stale_pids(path: Path) -> list[int] | None:
    """PIDs from a pid file whose owner is gone and which still run the recorded binary.

    None when the owner is still alive (not stale: leave it alone).
    """
    try:
        record = json.loads(path.read_text())
        owner = int(record["owner"])
        entries = [(int(e["pid"]), str(e["argv0"])) for e in record["processes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if is_alive(owner):  # including this very process: another ControlPlane of ours
        return None
    return [pid for pid, argv0 in entries if cmdline(pid)[:1] == [argv0]]
