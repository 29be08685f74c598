"""The observability HTTP server of a process: /metrics, /healthz, /readyz, /status
(docs/metrics.md).

One small stdlib server per process, in daemon threads, reading the orchestrator's status
only when asked (and once a second for the iteration rates): the loops pay nothing for it.

- ``/metrics``: the Prometheus text format (see :mod:`ostinato._observe._metrics` for the series).
- ``/healthz``: ``200 ok`` while the process serves at all.
- ``/readyz``: ``200`` once the hub is up and every loop replica has started (its state is no
  longer ``pending``); else ``503`` with a JSON ``{"ready": false, "reason": ...}``.
- ``/status``: the :class:`WorkflowStatus` as JSON (camelCase names), each loop's
  ``iterationsPerSecond`` and ``iterationsPerSecondWindow`` set from the server's own samples
  (see :class:`IterationRates`); each replica's ``desiredState`` (what was asked) beside its
  ``state`` (what it does).
- ``POST /control`` (where the source can take it: ``ostinato run`` and ``ostinato hub``, with
  the same meaning): JSON ``{"loop": NAME or null, "state": "running" | "paused" | "stopped"}``
  sets the desired state of one loop or of all, kept by the source and reported at once in
  ``/status`` while the loops reach it at their next iteration boundary; ``200`` with a
  :class:`ControlReply` ``{"loops": {NAME: STATE, ...}}``, ``400`` naming the field of a bad
  request, ``404`` for an unknown loop.

The server serves a *status source*: a :class:`WorkflowOrchestrator` (every loop in this
process), a hub running alone (its loops' heartbeats), or one remote loop.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError

from .._model._spec import DesiredState
from .._model._status import LoopState, WorkflowStatus
from ._metrics import metrics_registry

__all__ = [
    "ControlReply",
    "ControlRequest",
    "Controllable",
    "IterationRates",
    "ObservabilityServer",
    "StatusSource",
]

log = logging.getLogger("ostinato.http")

#: Default window of the iteration rates in /status, and how often they are sampled, seconds.
RATE_WINDOW_SECONDS = 10.0
SAMPLE_EVERY_SECONDS = 1.0

#: The Prometheus text format 0.0.4, which generate_latest writes for our names (all of them
#: legacy-valid). Not prometheus_client.CONTENT_TYPE_LATEST: recent releases say 1.0.0 there,
#: which older Prometheus servers do not know.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


#: Largest POST body read, bytes: a control request is a few dozen.
MAX_BODY_BYTES = 64 * 1024


class StatusSource(Protocol):
    """What the server serves: the status, and why it is not ready (None when it is)."""

    def status(self) -> WorkflowStatus: ...

    def not_ready(self) -> str | None: ...


@runtime_checkable
class Controllable(Protocol):
    """A source that also takes desired states (POST /control): it keeps what was asked of
    each loop, reports it as the loops' ``desired_state`` and returns it (every loop's)."""

    def set_state(self, loop: str | None, state: DesiredState) -> dict[str, str]: ...


class ControlRequest(BaseModel):
    """The body of ``POST /control``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loop: str | None = None
    state: DesiredState


class ControlReply(BaseModel):
    """The answer to ``POST /control``: what was last asked of every loop (not inferred from
    what the loops do), from ``ostinato run`` and ``ostinato hub`` alike."""

    loops: dict[str, DesiredState]


class IterationRates:
    """Iterations per second of each loop replica over a sliding window.

    A sampler records ``(time, iterations)`` of every replica every ``sample_every`` seconds
    and keeps the samples of the last ``window`` seconds. The rate at a request is

        (iterations now - iterations at the oldest kept sample) / (now - that sample's time)

    so it covers between ``window - sample_every`` and ``window`` seconds (9 to 10 s by
    default) once the server has run that long, and since the first sample before that. It is
    ``None`` while the oldest sample is younger than ``sample_every`` (the first second), and
    again for a moment after a replica's iterations went down (a restarted process loop counts
    from zero): its samples are then dropped.
    """

    def __init__(
        self, window: float = RATE_WINDOW_SECONDS, sample_every: float = SAMPLE_EVERY_SECONDS
    ) -> None:
        if not 0 < sample_every <= window:
            raise ValueError("need 0 < sample_every <= window")
        self.window = window
        self.sample_every = sample_every
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, int], collections.deque[tuple[float, int]]] = {}
        self._maxlen = int(window / sample_every) + 2

    def sample(self, status: WorkflowStatus, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for lp in status.loops:
                ring = self._samples.setdefault(
                    (lp.name, lp.replica), collections.deque(maxlen=self._maxlen)
                )
                if lp.state is LoopState.PENDING:
                    # Not connected (yet, or again after a hub restart): its 0 is a placeholder,
                    # and a rate from it to the replica's whole count once it reports is absurd.
                    ring.clear()
                    continue
                if ring and lp.iterations < ring[-1][1]:
                    ring.clear()
                ring.append((now, lp.iterations))
                while ring and ring[0][0] < now - self.window:
                    ring.popleft()

    def rate(
        self, loop: str, replica: int, iterations: int, now: float | None = None
    ) -> tuple[float | None, float | None]:
        """``(iterations per second, window in seconds)``, or ``(None, None)``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ring = self._samples.get((loop, replica))
            oldest = next((s for s in ring or () if s[0] >= now - self.window), None)
        if oldest is None:
            return None, None
        span = now - oldest[0]
        if span < self.sample_every or iterations < oldest[1]:
            return None, None
        return (iterations - oldest[1]) / span, span


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: ObservabilityServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ostinato"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        route = self.server.app.routes.get(path)
        if route is None:
            self._reply(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
            return
        self._run(path, route)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != "/control" or not self.server.app.controllable:
            self._reply(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._reply(*_error(HTTPStatus.BAD_REQUEST, "Content-Length: 0 to 65536 bytes"))
            return
        body = self.rfile.read(length)
        self._run(path, lambda: self.server.app.control(body))

    def _run(self, path: str, route: Callable[[], Reply]) -> None:
        try:
            code, content_type, body = route()
        except Exception as exc:
            log.exception("%s failed", path)
            code, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8"
            body = f"error: {exc}\n".encode()
        self._reply(code, content_type, body)

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


Reply = tuple[int, str, bytes]


def _error(code: int, message: str) -> Reply:
    return code, "application/json", json.dumps({"error": message}).encode() + b"\n"


class ObservabilityServer:
    """Serves a workflow's /metrics, /healthz, /readyz, /status (and POST /control) over HTTP.

    ``source`` is a :class:`WorkflowOrchestrator`, a hub's :class:`RemoteLoops` or anything
    with ``status()`` and ``not_ready()``. ``port`` 0 picks a free port (read it from
    :attr:`port`). It binds ``127.0.0.1`` unless told otherwise. Start it before or after the
    source; :meth:`close` it after.
    """

    def __init__(
        self,
        source: StatusSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_window: float = RATE_WINDOW_SECONDS,
        sample_every: float = SAMPLE_EVERY_SECONDS,
    ) -> None:
        self.source = source
        self.controllable = isinstance(source, Controllable)
        self.registry = metrics_registry(source.status)
        self.rates = IterationRates(rate_window, sample_every)
        self.routes: dict[str, Callable[[], Reply]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status,
        }
        self._httpd = _Server((host, port), _Handler)
        self._httpd.app = self
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ObservabilityServer:
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="ostinato-http",
                daemon=True,
            ),
            threading.Thread(target=self._sample, name="ostinato-http-rates", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("serving /metrics, /healthz, /readyz, /status on %s", self.url)
        return self

    def close(self) -> None:
        self._closed.set()
        if self._threads:
            self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ObservabilityServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _sample(self) -> None:
        while True:
            try:
                self.rates.sample(self.source.status())
            except Exception:  # a status read racing a stop must not end the sampler
                log.debug("rate sample failed", exc_info=True)
            if self._closed.wait(self.rates.sample_every):
                return

    # -- routes --------------------------------------------------------------------------------

    def _metrics(self) -> Reply:
        return HTTPStatus.OK, METRICS_CONTENT_TYPE, generate_latest(self.registry)

    def _healthz(self) -> Reply:
        return HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n"

    def _readyz(self) -> Reply:
        reason = self.source.not_ready()
        if reason is None:
            return HTTPStatus.OK, "application/json", b'{"ready": true}\n'
        body = json.dumps({"ready": False, "reason": reason}).encode() + b"\n"
        return HTTPStatus.SERVICE_UNAVAILABLE, "application/json", body

    def _status(self) -> Reply:
        status = self.source.status()
        now = time.monotonic()
        loops = []
        for lp in status.loops:
            rate, window = self.rates.rate(lp.name, lp.replica, lp.iterations, now)
            rates = {
                "iterations_per_second": None if rate is None else round(rate, 3),
                "iterations_per_second_window": None if window is None else round(window, 3),
            }
            loops.append(lp.model_copy(update=rates))
        body = status.model_copy(update={"loops": loops}).model_dump_json(by_alias=True)
        return HTTPStatus.OK, "application/json", body.encode() + b"\n"

    def control(self, body: bytes) -> Reply:
        source = self.source
        assert isinstance(source, Controllable)
        try:
            request = ControlRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(HTTPStatus.BAD_REQUEST, f"{where}: {first['msg']}")
        try:
            loops = source.set_state(request.loop, request.state)
        except KeyError as exc:
            return _error(HTTPStatus.NOT_FOUND, f"loop: {exc.args[0]}")
        reply = ControlReply.model_validate({"loops": loops}).model_dump_json()
        return HTTPStatus.OK, "application/json", reply.encode() + b"\n"
