"""A replica waiting for the Lease answers the kubelet's probes: alive while its wait goes on,
never ready, and it frees the port for kopf (no cluster needed)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from hack.k8s._util import free_port
from ostinato_operator._standby import StandbyHealth, lease_report


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class _Wait:
    holder: str | None
    error: str | None
    at: float


def test_alive_not_ready_and_the_port_freed() -> None:
    state = _Wait("pod-a_1234", None, time.monotonic())
    reads = [0]
    report = lease_report(
        holder=lambda: state.holder,
        error=lambda: state.error,
        last_attempt=lambda: state.at,
        lease="ostinato-system/ostinato",
        stale_seconds=12,
        reads=lambda: reads[0],
    )
    port = free_port()
    health = StandbyHealth("127.0.0.1", port, report)
    try:
        # Up before the first read of the Lease: alive, and not claiming the Lease is free.
        assert _get(port, "/healthz") == (
            200,
            "standby: waiting for lease ostinato-system/ostinato, not read yet\n",
        )
        reads[0] = 1
        assert _get(port, "/healthz") == (
            200,
            "standby: waiting for lease ostinato-system/ostinato, held by pod-a_1234\n",
        )
        status, body = _get(port, "/healthz?probe=readiness")
        assert status == 503
        assert "not the active replica" in body
        state.error = "ApiException: Service Unavailable"
        status, body = _get(port, "/healthz")
        assert status == 200, body  # the API server away is no reason to restart
        assert "last read failed: ApiException: Service Unavailable" in body
        state.at = time.monotonic() - 60
        status, body = _get(port, "/healthz")
        assert status == 503
        assert "the wait is stuck" in body
        assert _get(port, "/metrics")[0] == 404
    finally:
        health.close()
    with socket.socket() as sock:  # what kopf does next: bind the same port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
