"""The HTTP server under /metrics, /status and POST /control: a route table, a bearer token
checked in one place, and limits that keep slow, huge or malformed requests from holding it.

- **Routes** say their method and their :class:`Access`: ``OPEN`` (never asks for the token:
  ``/healthz``, which probes call without one), ``READ`` (asks for it when
  :attr:`HttpSettings.token_for_reads` is on) or ``CHANGE`` (always asks). Every route that is
  not a GET changes state and must say ``CHANGE`` (:class:`Route` refuses anything else), so a
  new POST route cannot forget the token: the check is made here, before any route runs.
- **The token** is compared in constant time (:func:`hmac.compare_digest`, on bytes). A missing
  or wrong one is a ``401`` with ``WWW-Authenticate: Bearer`` and a one-line JSON error; a server
  without a token refuses ``CHANGE`` routes with ``403``. The token is never logged: the request
  log line names the method, the path (no query) and the code, and no header.
- **Limits** (:class:`HttpSettings`): one request per connection, read within
  ``request_timeout_seconds`` in all (a client dribbling its headers a byte at a time is cut off
  then, however steady); a request head of at most ``max_head_bytes`` (``431``); a POST needs a
  ``Content-Length`` (``411``) of at most ``max_body_bytes`` (``413``, answered without reading
  the body), ``Content-Type: application/json`` (``415``) and all of its body (``400``
  otherwise); at most ``max_connections`` requests are served at once, each in a thread of its
  own, and a connection beyond that is answered ``503`` at once and closed. Unknown paths are
  ``404``, a known path with another method ``405``; every error is one line of JSON.
"""

from __future__ import annotations

import enum
import hmac
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["Access", "HttpServer", "HttpSettings", "Reply", "Request", "Route", "json_error"]

log = logging.getLogger("ostinato.http")

#: Longest request line read, bytes (then 414).
MAX_REQUEST_LINE_BYTES = 8 * 1024
_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")


class HttpSettings(BaseModel):
    """How a server serves (where, its host and port, is given beside it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Ask for the token on /status, /metrics and /readyz too (never on /healthz: probes cannot
    #: send one). Prometheus can (``authorization: {credentials_file: ...}``); the kubelet's
    #: readiness probe cannot, so pods keep it off.
    token_for_reads: bool = False
    #: The whole request, from the connection's accept to its body's last byte, must arrive
    #: within this; then the connection is closed without an answer.
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Requests served at once, each in a thread; more connections are answered 503.
    max_connections: int = Field(default=32, ge=1)
    #: Largest request head (request line and headers) read, bytes.
    max_head_bytes: int = Field(default=16 * 1024, ge=1024)
    #: Largest POST body read, bytes: a control request is a few dozen.
    max_body_bytes: int = Field(default=64 * 1024, ge=1)
    #: /status's iteration rates: their window, and how often they are sampled.
    rate_window_seconds: float = Field(default=10.0, gt=0)
    sample_every_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _sampled_within_the_window(self) -> Self:
        if self.sample_every_seconds > self.rate_window_seconds:
            raise ValueError("sample_every_seconds must not exceed rate_window_seconds")
        return self


class Access(enum.Enum):
    """Who may call a route."""

    OPEN = "open"  # anyone, always
    READ = "read"  # anyone, unless HttpSettings.token_for_reads
    CHANGE = "change"  # only with the token


@dataclass(frozen=True)
class Request:
    """What a route gets: the path without its query, the query, and the body (POST)."""

    path: str
    query: str
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    code: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_error(code: int, message: str, *headers: tuple[str, str]) -> Reply:
    """``{"error": message}`` on one line."""
    return Reply(code, "application/json", json.dumps({"error": message}).encode() + b"\n", headers)


@dataclass(frozen=True)
class Route:
    """One method on one path. Anything but a GET changes state, so it must be ``CHANGE``."""

    method: str
    path: str
    access: Access
    handler: Callable[[Request], Reply] = field(repr=False)

    def __post_init__(self) -> None:
        if self.method not in ("GET", "POST"):
            raise ValueError(f"{self.method} {self.path}: only GET and POST routes are served")
        if self.method != "GET" and self.access is not Access.CHANGE:
            raise ValueError(
                f"{self.method} {self.path}: a {self.method} route changes state, so its access "
                "must be Access.CHANGE (it asks for the token)"
            )


class _HeadTooLargeError(Exception):
    """The request head went past max_head_bytes."""


class _Deadline(io.RawIOBase):
    """The connection's input: every read waits at most until the request's deadline, and at
    most ``allowance`` bytes are read in all."""

    def __init__(self, sock: socket.socket, deadline: float, allowance: int) -> None:
        self._sock = sock
        self.deadline = deadline
        self.allowance = allowance

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.allowance <= 0:
            raise _HeadTooLargeError
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took longer than request_timeout_seconds")
        self._sock.settimeout(remaining)
        received = self._sock.recv_into(memoryview(buffer).cast("B")[: self.allowance])
        self.allowance -= received
        return received


class _Output(io.BufferedIOBase):
    """The connection's output: all of every write (sendall), within the request's deadline."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        deadline = time.monotonic() + self._timeout
        sent = 0
        while sent < len(view):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not take the answer in time")
            self._sock.settimeout(remaining)
            sent += self._sock.send(view[sent:])
        return sent


def _loggable(path: str) -> str:
    """The path of a request line as logged: no query (never a secret), printable, short."""
    return ascii(urlsplit(path).path[:200])[1:-1]


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    protocol_version = "HTTP/1.0"  # one request per connection

    def version_string(self) -> str:
        return "ostinato"

    def setup(self) -> None:
        settings = self.server.settings
        self.connection = self.request
        self.command = ""
        self.path = ""
        self.requestline = ""
        self.request_version = "HTTP/1.0"
        self._input = _Deadline(
            self.connection,
            time.monotonic() + settings.request_timeout_seconds,
            settings.max_head_bytes,
        )
        self.rfile = io.BufferedReader(self._input)
        self.wfile = _Output(self.connection, settings.request_timeout_seconds)

    def handle(self) -> None:
        self.close_connection = True
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
            if not line:
                return  # connected and said nothing
            self.raw_requestline = line
            if len(line) > MAX_REQUEST_LINE_BYTES:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
                return
            if not self.parse_request():
                return  # it answered why
            if self.request_version == "HTTP/0.9":
                self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not served")
                return
            self._dispatch()
        except TimeoutError:
            log.debug("%s: request not complete in time; connection closed", self._client())
        except _HeadTooLargeError:
            limit = self.server.settings.max_head_bytes
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head: at most {limit} bytes"
            )

    def _client(self) -> str:
        return str(self.client_address[0]) if self.client_address else "-"

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        methods = self.server.routes.get(parts.path)
        if methods is None:
            self._send(json_error(HTTPStatus.NOT_FOUND, "not found"))
            return
        route = methods.get(self.command)
        if route is None:
            allowed = ", ".join(sorted(methods))
            self._send(
                json_error(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"method {self.command[:20]} not allowed here (allowed: {allowed})",
                    ("Allow", allowed),
                )
            )
            return
        refusal = self.server.authorize(route.access, self.headers.get_all("Authorization"))
        if refusal is not None:
            self._send(refusal)
            return
        body = b""
        if route.method == "POST":
            body_or_refusal = self._body()
            if isinstance(body_or_refusal, Reply):
                self._send(body_or_refusal)
                return
            body = body_or_refusal
        try:
            reply = route.handler(Request(parts.path, parts.query, body))
        except Exception as exc:
            log.exception("%s %s failed", route.method, route.path)
            reply = json_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        self._send(reply)

    def _body(self) -> bytes | Reply:
        """The POST body, or the refusal to answer instead (the body is then left unread)."""
        settings = self.server.settings
        if self.headers.get_all("Transfer-Encoding"):
            return json_error(
                HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding: not served; send Content-Length"
            )
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return json_error(HTTPStatus.LENGTH_REQUIRED, "Content-Length: required")
        if len(lengths) > 1 or not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            return json_error(HTTPStatus.BAD_REQUEST, "Content-Length: not one decimal number")
        length = int(lengths[0])
        if length > settings.max_body_bytes:
            return json_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"Content-Length: at most {settings.max_body_bytes} bytes, got {length}",
            )
        media = (self.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if media != "application/json":
            return json_error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type: expected application/json, got {media[:40] or 'none'}",
            )
        self._input.allowance = length  # bytes already buffered were counted with the head
        body = self.rfile.read(length)
        if len(body) < length:
            return json_error(HTTPStatus.BAD_REQUEST, f"body: {len(body)} of {length} bytes")
        return body

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.code)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (a bad request line, too many headers...) as ours."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # parse_request's default: answer with a head
            self.request_version = "HTTP/1.0"
        try:
            self._send(json_error(code, message or HTTPStatus(code).phrase))
        except OSError:
            log.debug("%s: could not answer %d", self._client(), code)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        method = (self.command or "-")[:20]
        log.debug('%s "%s %s" %s', self._client(), method, _loggable(self.path or ""), code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self._client(), *args)


class HttpServer(HTTPServer):
    """Serves ``routes`` on ``(host, port)`` with ``settings``; ``token`` unlocks ``CHANGE``
    routes (and ``READ`` ones with ``token_for_reads``). Run ``serve_forever`` in a thread."""

    # Connections wait in the kernel's queue while the accepting thread hands them out.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        routes: Iterable[Route],
        settings: HttpSettings,
        token: str | None,
    ) -> None:
        if token is not None and (not token or not token.isascii()):
            raise ValueError("a control token is non-empty ASCII text")
        if settings.token_for_reads and token is None:
            raise ValueError("token_for_reads needs a control token")
        self.settings = settings
        self._token = None if token is None else token.encode("ascii")
        self.routes: dict[str, dict[str, Route]] = {}
        for route in routes:
            methods = self.routes.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"{route.method} {route.path}: two routes")
            methods[route.method] = route
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._lock = threading.Lock()
        self._busy = 0
        self._refused = 0
        super().__init__(address, _Handler)

    # -- the token, checked here only ----------------------------------------------------------

    def authorize(self, access: Access, authorization: list[str] | None) -> Reply | None:
        """None when a request with these ``Authorization`` headers may call a route of this
        access; else the refusal to answer."""
        if access is Access.OPEN or (access is Access.READ and not self.settings.token_for_reads):
            return None
        if self._token is None:
            return json_error(
                HTTPStatus.FORBIDDEN,
                "control is off: this server has no control token (ostinato run, ostinato hub "
                "and ObservabilityServer(control_token=...) take one)",
            )
        challenge = ("WWW-Authenticate", 'Bearer realm="ostinato"')
        if not authorization:
            return json_error(
                HTTPStatus.UNAUTHORIZED,
                "Authorization: missing; send 'Authorization: Bearer TOKEN'",
                challenge,
            )
        scheme, _, credentials = authorization[0].strip().partition(" ")
        if len(authorization) > 1 or scheme.lower() != "bearer" or not credentials.strip():
            return json_error(
                HTTPStatus.UNAUTHORIZED,
                "Authorization: expected one 'Bearer TOKEN'",
                challenge,
            )
        try:
            given = credentials.strip().encode("latin-1")
        except UnicodeEncodeError:
            given = b""
        if not hmac.compare_digest(given, self._token):
            return json_error(
                HTTPStatus.UNAUTHORIZED,
                "Authorization: wrong bearer token",
                ("WWW-Authenticate", 'Bearer realm="ostinato", error="invalid_token"'),
            )
        return None

    # -- one bounded thread per connection -----------------------------------------------------

    @property
    def busy(self) -> int:
        """Connections being served now."""
        with self._lock:
            return self._busy

    @property
    def refused(self) -> int:
        """Connections answered 503 so far, for want of a free slot."""
        with self._lock:
            return self._refused

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._lock:
            self._busy += 1
        try:
            threading.Thread(
                target=self._serve,
                args=(request, client_address),
                name="ostinato-http-request",
                daemon=True,
            ).start()
        except BaseException:
            self._release()
            self.shutdown_request(request)
            raise

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a client gone mid-answer, say: its connection only
            log.debug("connection from %s failed", client_address[0], exc_info=True)
        finally:
            self.shutdown_request(request)
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1
        self._slots.release()

    _BUSY = (
        b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: 41\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        b'{"error": "too many connections; retry"}\n'
    )

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 without waiting for anything (the accepting thread must never block)."""
        with self._lock:
            self._refused += 1
            first = self._refused == 1
        if first:
            log.warning(
                "more than %d connections at once: refusing the others with 503",
                self.settings.max_connections,
            )
        try:
            request.setblocking(False)
            request.send(self._BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("cannot serve a connection from %s", client_address[0], exc_info=True)
