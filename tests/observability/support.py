"""A fake status source that counts what it was asked, and raw HTTP over real sockets: what the
server's auth, limits and fuzz tests share."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from ostinato import DesiredState, LoopState, LoopStatus, WorkflowStatus

TOKEN = "fuzz-Control-token_0123456789-abcdefghijkl"


class CountingSource:
    """A Controllable source of one loop: every ``set_state`` call is counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str | None, DesiredState]] = []
        self.desired = DesiredState.RUNNING

    def status(self) -> WorkflowStatus:
        loop = LoopStatus(
            name="a", pool="thread", state=LoopState.RUNNING, desired_state=self.desired
        )
        return WorkflowStatus(workflow="fuzzed", loops=[loop])

    def not_ready(self) -> str | None:
        return None

    def set_state(self, loop: str | None, state: DesiredState) -> dict[str, str]:
        if loop not in (None, "a"):
            raise KeyError(f"no loop {loop!r}")
        with self._lock:
            self.calls.append((loop, state))
            self.desired = state
        return {"a": state.value}


def exchange(port: int, data: bytes, timeout: float = 10.0, close_write: bool = True) -> bytes:
    """Send ``data`` on a fresh connection (then end the sending side), read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before it had all of it
            pass
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:  # closed with our bytes unread: what it said before counts
        pass
    return b"".join(chunks)


def status_code(answer: bytes) -> int | None:
    """The status of an HTTP answer, None when there was none."""
    head = answer.split(b"\r\n", 1)[0].split()
    return int(head[1]) if len(head) >= 2 and head[0].startswith(b"HTTP/") else None


def request(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A well-formed request: Content-Length and Content-Type (JSON) when there is a body."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closed ``sock`` (its reads end) within ``seconds``."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()
