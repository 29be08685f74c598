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
  the same meaning), with ``Authorization: Bearer TOKEN``: JSON ``{"loop": NAME or null,
  "state": "running" | "paused" | "stopped"}`` sets the desired state of one loop or of all,
  kept by the source and reported at once in ``/status`` while the loops reach it at their next
  iteration boundary; ``200`` with a :class:`ControlReply` ``{"loops": {NAME: STATE, ...}}``,
  ``400`` naming the field of a bad request, ``404`` for an unknown loop, ``401`` without the
  workflow's control token.
- ``/console/`` and ``/console/data`` (with a :class:`Console`, ``--ui``): the live web console,
  its page from the package and its figures (:mod:`ostinato._observe._console`).

The server serves a *status source*: a :class:`WorkflowOrchestrator` (every loop in this
process), a hub running alone (its loops' heartbeats), or one remote loop. Who may call what,
and the limits on requests, are :mod:`ostinato._observe._serving`'s.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from http import HTTPStatus
from types import TracebackType
from typing import Protocol, runtime_checkable

from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError

from .._model._spec import DesiredState
from .._model._status import LoopState, WorkflowStatus
from ._console import Console
from ._metrics import metrics_registry
from ._serving import Access, HttpServer, HttpSettings, Reply, Request, Route, json_error

__all__ = [
    "ControlReply",
    "ControlRequest",
    "Controllable",
    "HttpSettings",
    "IterationRates",
    "ObservabilityServer",
    "StatusSource",
]

log = logging.getLogger("ostinato.http")

#: Default window of the iteration rates in /status, and how often they are sampled, seconds.
RATE_WINDOW_SECONDS = HttpSettings().rate_window_seconds
SAMPLE_EVERY_SECONDS = HttpSettings().sample_every_seconds

#: The Prometheus text format 0.0.4, which generate_latest writes for our names (all of them
#: legacy-valid). Not prometheus_client.CONTENT_TYPE_LATEST: recent releases say 1.0.0 there,
#: which older Prometheus servers do not know.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class ObservabilityServer:
    """Serves a workflow's /metrics, /healthz, /readyz, /status (and POST /control) over HTTP.

    ``source`` is a :class:`WorkflowOrchestrator`, a hub's :class:`RemoteLoops` or anything
    with ``status()`` and ``not_ready()``. ``port`` 0 picks a free port (read it from
    :attr:`port`). It binds ``127.0.0.1`` unless told otherwise. ``control_token`` is the
    workflow's: without one, POST /control is refused (403) even where the source takes it.
    Start it before or after the source; :meth:`close` it after.
    """

    def __init__(
        self,
        source: StatusSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: HttpSettings | None = None,
        control_token: str | None = None,
        console: Console | None = None,
    ) -> None:
        self.source = source
        self.console = console
        self.settings = settings or HttpSettings()
        self.controllable = isinstance(source, Controllable)
        self.registry = metrics_registry(source.status)
        self.rates = IterationRates(
            self.settings.rate_window_seconds, self.settings.sample_every_seconds
        )
        routes = [
            Route("GET", "/healthz", Access.OPEN, self._healthz),
            Route("GET", "/readyz", Access.READ, self._readyz),
            Route("GET", "/metrics", Access.READ, self._metrics),
            Route("GET", "/status", Access.READ, self._status),
        ]
        if self.controllable:
            routes.append(Route("POST", "/control", Access.CHANGE, self._control))
        if console is not None:
            routes += console.routes(self.status)
        self._httpd = HttpServer((host, port), routes, self.settings, control_token)
        #: Where the control token can be read (a file, a variable), for the start-up line.
        self.token_from: str | None = None
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def busy(self) -> int:
        """Requests being served now (each in a thread; at most ``settings.max_connections``)."""
        return self._httpd.busy

    @property
    def refused(self) -> int:
        """Connections refused so far (503) because ``settings.max_connections`` were served."""
        return self._httpd.refused

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def console_url(self) -> str | None:
        """Where the console is served, when it is."""
        return None if self.console is None else f"{self.url}/console/"

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
        control = " and POST /control" if self.controllable else ""
        control += " and the console (/console/)" if self.console is not None else ""
        token = f" (control token: {self.token_from})" if self.token_from else ""
        log.info("serving /metrics, /healthz, /readyz, /status%s on %s%s", control, self.url, token)
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
                status = self.source.status()
                self.rates.sample(status)
                if self.console is not None:
                    self.console.history.sample(status)
            except Exception:  # a status read racing a stop must not end the sampler
                log.debug("rate sample failed", exc_info=True)
            if self._closed.wait(self.rates.sample_every):
                return

    # -- routes --------------------------------------------------------------------------------

    def _metrics(self, _request: Request) -> Reply:
        return Reply(HTTPStatus.OK, METRICS_CONTENT_TYPE, generate_latest(self.registry))

    def _healthz(self, _request: Request) -> Reply:
        return Reply(HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n")

    def _readyz(self, _request: Request) -> Reply:
        reason = self.source.not_ready()
        if reason is None:
            return Reply(HTTPStatus.OK, "application/json", b'{"ready": true}\n')
        body = json.dumps({"ready": False, "reason": reason}).encode() + b"\n"
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, "application/json", body)

    def _status(self, _request: Request) -> Reply:
        body = self.status().model_dump_json(by_alias=True)
        return Reply(HTTPStatus.OK, "application/json", body.encode() + b"\n")

    def status(self) -> WorkflowStatus:
        """The source's status with each loop's iteration rate (what /status serves)."""
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
        return status.model_copy(update={"loops": loops})

    def _control(self, request: Request) -> Reply:
        """POST /control: reached only with the token (Access.CHANGE)."""
        source = self.source
        assert isinstance(source, Controllable)
        try:
            asked = ControlRequest.model_validate_json(request.body or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return json_error(HTTPStatus.BAD_REQUEST, f"{where}: {first['msg']}")
        try:
            loops = source.set_state(asked.loop, asked.state)
        except KeyError as exc:
            return json_error(HTTPStatus.NOT_FOUND, f"loop: {exc.args[0]}")
        reply = ControlReply.model_validate({"loops": loops}).model_dump_json()
        return Reply(HTTPStatus.OK, "application/json", reply.encode() + b"\n")
