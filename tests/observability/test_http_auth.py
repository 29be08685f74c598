"""Who may call what on the HTTP server, and the limits that keep requests from holding it: the
bearer token on POST /control (and on reads when asked), errors as one line of JSON, slow and
oversized requests cut off, the number of connections served at once bounded. Real sockets."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from ostinato._observe._http import HttpSettings, ObservabilityServer
from ostinato._observe._serving import Access, Reply, Request, Route, json_error

from .support import (
    TOKEN,
    CountingSource,
    closed_within,
    exchange,
    read_all,
    request,
    status_code,
    until,
)

CONTROL = json.dumps({"loop": "a", "state": "paused"}).encode()
READS = ("/status", "/metrics", "/readyz")


def parts(answer: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_code(answer), headers, body


def one_line_error(body: bytes) -> str:
    assert body.endswith(b"\n"), body
    assert body.count(b"\n") == 1, body
    doc = json.loads(body)
    assert set(doc) == {"error"}, doc
    return str(doc["error"])


@pytest.fixture
def source() -> CountingSource:
    return CountingSource()


@pytest.fixture
def server(source: CountingSource) -> Iterator[ObservabilityServer]:
    with ObservabilityServer(source, control_token=TOKEN) as srv:
        yield srv


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (None, "missing"),
        ("Bearer", "expected one 'Bearer TOKEN'"),
        (f"Basic {TOKEN}", "expected one 'Bearer TOKEN'"),
        ("Bearer wrong-token-0123456789", "wrong bearer token"),
        (f"Bearer {TOKEN[:-1]}", "wrong bearer token"),
        (f"Bearer {TOKEN}x", "wrong bearer token"),
        ("Bearer \u00e9t\u00e9-token-0123456789", "wrong bearer token"),
    ],
)
def test_control_without_the_right_token_is_401_and_changes_nothing(
    server: ObservabilityServer, source: CountingSource, authorization: str | None, says: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = exchange(server.port, request("POST", "/control", body=CONTROL, headers=headers))
    code, head, body = parts(answer)
    assert code == 401
    assert head["www-authenticate"].startswith("Bearer")
    assert says in one_line_error(body)
    assert TOKEN not in answer.decode("latin-1")
    assert source.calls == []


@pytest.mark.timeout(30)
def test_two_authorization_headers_are_refused_even_with_the_right_one_first(
    server: ObservabilityServer, source: CountingSource
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "authorization": "Bearer other-0123456789xy"}
    answer = exchange(server.port, request("POST", "/control", body=CONTROL, headers=headers))
    assert status_code(answer) == 401
    assert source.calls == []


@pytest.mark.timeout(30)
def test_control_with_the_token_is_applied(
    server: ObservabilityServer, source: CountingSource
) -> None:
    for scheme in ("Bearer", "bearer"):  # the scheme's case does not matter (RFC 9110)
        headers = {"Authorization": f"{scheme}   {TOKEN} "}
        answer = exchange(server.port, request("POST", "/control", body=CONTROL, headers=headers))
        code, _, body = parts(answer)
        assert (code, json.loads(body)) == (200, {"loops": {"a": "paused"}})
    assert len(source.calls) == 2


@pytest.mark.timeout(30)
def test_reads_are_open_by_default_and_healthz_always(server: ObservabilityServer) -> None:
    for path in (*READS, "/healthz"):
        assert status_code(exchange(server.port, request("GET", path))) == 200, path
    # A wrong token on an open read is not looked at.
    assert status_code(exchange(server.port, request("GET", "/status", token="nope" * 5))) == 200


@pytest.mark.timeout(30)
def test_token_for_reads_asks_for_it_on_every_read_but_healthz(source: CountingSource) -> None:
    settings = HttpSettings(token_for_reads=True)
    with ObservabilityServer(source, settings=settings, control_token=TOKEN) as srv:
        for path in READS:
            answer = exchange(srv.port, request("GET", path))
            assert status_code(answer) == 401, path
            assert parts(answer)[1]["www-authenticate"].startswith("Bearer")
            assert status_code(exchange(srv.port, request("GET", path, token=TOKEN))) == 200
        assert status_code(exchange(srv.port, request("GET", "/healthz"))) == 200
    with pytest.raises(ValueError, match="token_for_reads needs a control token"):
        ObservabilityServer(source, settings=settings)


@pytest.mark.timeout(30)
def test_without_a_token_control_is_off_not_open(source: CountingSource) -> None:
    with ObservabilityServer(source) as srv:
        answer = exchange(srv.port, request("POST", "/control", token=TOKEN, body=CONTROL))
        code, _, body = parts(answer)
        assert code == 403
        assert "no control token" in one_line_error(body)
    assert source.calls == []


@pytest.mark.timeout(30)
def test_the_token_is_never_logged_nor_served(
    server: ObservabilityServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ostinato")
    for req in (
        request("POST", "/control", token=TOKEN, body=CONTROL),
        request("POST", f"/control?token={TOKEN}", token=TOKEN, body=b"{bad json"),
        request("POST", "/control", token=TOKEN[:-2], body=CONTROL),
        request("GET", f"/status?token={TOKEN}", token=TOKEN),
        request("GET", "/metrics", token=TOKEN),
        f"GET /status?{TOKEN} HTTP/9.9\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode(),
    ):
        answer = exchange(server.port, req)
        assert TOKEN not in answer.decode("latin-1")
    assert caplog.records, "the requests were logged"  # so the next line can fail
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in (record.exc_text or "")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("raw", "code", "says"),
    [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", 404, "not found"),
        (b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "allowed: GET"),
        (b"DELETE /control HTTP/1.1\r\n\r\n", 405, "allowed: POST"),
        (b"GET /control HTTP/1.1\r\n\r\n", 405, "allowed: POST"),
        (b"BREW /healthz HTTP/1.1\r\n\r\n", 405, "allowed: GET"),
        (b"GET /healthz\r\n\r\n", 400, "HTTP/0.9"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505, "HTTP version"),
        (b"nonsense\r\n\r\n", 400, "Bad request syntax"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "request line too long"),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, "request head"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: a\r\n" * 120 + b"\r\n", 431, "Too many headers"),
    ],
)
def test_malformed_requests_get_a_one_line_json_error(
    server: ObservabilityServer, raw: bytes, code: int, says: str
) -> None:
    answer = exchange(server.port, raw)
    got, head, body = parts(answer)
    assert got == code, answer[:200]
    assert head["content-type"] == "application/json"
    assert says in one_line_error(body)
    if code == 405:
        assert head["allow"] in ("GET", "POST")


def _post(token: str, body: bytes, **headers: str) -> bytes:
    lines = ["POST /control HTTP/1.1", f"Authorization: Bearer {token}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("raw", "code", "says"),
    [
        (_post(TOKEN, CONTROL, Content_Type="application/json"), 411, "Content-Length: required"),
        (
            _post(TOKEN, CONTROL, Content_Length="-3", Content_Type="application/json"),
            400,
            "Content-Length: not one decimal number",
        ),
        (
            _post(TOKEN, CONTROL, Content_Length="1e3", Content_Type="application/json"),
            400,
            "Content-Length",
        ),
        (
            _post(TOKEN, CONTROL, Content_Length="9" * 30, Content_Type="application/json"),
            400,
            "Content-Length",
        ),
        (
            _post(TOKEN, b"", Transfer_Encoding="chunked", Content_Type="application/json"),
            411,
            "Transfer-Encoding",
        ),
        (_post(TOKEN, CONTROL, Content_Length=str(len(CONTROL))), 415, "Content-Type"),
        (
            _post(TOKEN, CONTROL, Content_Length=str(len(CONTROL)), Content_Type="text/plain"),
            415,
            "got text/plain",
        ),
        (
            _post(TOKEN, CONTROL[:5], Content_Length="40", Content_Type="application/json"),
            400,
            "body: 5 of 40 bytes",
        ),
        (
            _post(TOKEN, b"[1, 2]", Content_Length="6", Content_Type="application/json"),
            400,
            "body",
        ),
        (
            _post(
                TOKEN, b'{"state": "asleep"}', Content_Length="19", Content_Type="application/json"
            ),
            400,
            "state:",
        ),
        (
            _post(
                TOKEN,
                b'{"state": "paused", "x": 1}',
                Content_Length="27",
                Content_Type="application/json",
            ),
            400,
            "x:",
        ),
        (
            _post(
                TOKEN,
                b'{"loop": "zz", "state": "paused"}',
                Content_Length="33",
                Content_Type="application/json; charset=utf-8",
            ),
            404,
            "loop:",
        ),
    ],
)
def test_bad_control_bodies_are_refused_naming_what_and_change_nothing(
    server: ObservabilityServer, source: CountingSource, raw: bytes, code: int, says: str
) -> None:
    answer = exchange(server.port, raw)
    got, _, body = parts(answer)
    assert got == code, answer[:300]
    assert says in one_line_error(body)
    assert source.calls == []


@pytest.mark.timeout(30)
def test_an_oversized_body_is_refused_before_it_is_sent(
    server: ObservabilityServer, source: CountingSource
) -> None:
    """413 on the head alone: the server reads none of the 100 MB it announces."""
    head = _post(TOKEN, b"", Content_Length=str(100 * 2**20), Content_Type="application/json")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)  # and nothing of the body
        answer = read_all(sock)
    code, _, body = parts(answer)
    assert code == 413
    assert "at most 65536 bytes" in one_line_error(body)
    assert source.calls == []


@pytest.mark.timeout(30)
def test_a_client_dribbling_its_head_is_cut_off_at_the_request_timeout(
    source: CountingSource,
) -> None:
    """Slowloris: a byte every 50 ms keeps any per-read timeout happy; the request's deadline
    (0.5 s here) ends it anyway, and the server goes on serving others meanwhile."""
    settings = HttpSettings(request_timeout_seconds=0.5)
    with ObservabilityServer(source, settings=settings, control_token=TOKEN) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        stop = threading.Event()

        def dribble() -> None:
            for byte in b"POST /control HTTP/1.1\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.05):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=dribble, daemon=True)
        sender.start()
        try:
            assert status_code(exchange(srv.port, request("GET", "/healthz"))) == 200
            assert closed_within(sock, 10), "the dribbling client still holds its connection"
        finally:
            stop.set()
            sender.join(10)
            sock.close()
        assert until(lambda: srv.busy == 0, 10)
    assert source.calls == []


@pytest.mark.timeout(30)
def test_connections_beyond_the_bound_are_answered_503_at_once(source: CountingSource) -> None:
    settings = HttpSettings(max_connections=2, request_timeout_seconds=2.0)
    with ObservabilityServer(source, settings=settings, control_token=TOKEN) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(2)]
        try:
            assert until(lambda: srv.busy == 2, 10)
            answer = exchange(srv.port, request("GET", "/healthz"))
            code, head, body = parts(answer)
            assert code == 503
            assert head["retry-after"] == "1"
            assert "too many connections" in one_line_error(body)
            assert srv.refused == 1
        finally:
            for sock in idle:
                sock.close()
        # The two idle ones end (closed, or at their deadline): the server serves again.
        assert until(lambda: srv.busy == 0, 10)
        assert status_code(exchange(srv.port, request("GET", "/healthz"))) == 200


def test_a_route_that_changes_state_must_ask_for_the_token() -> None:
    def handler(_request: Request) -> Reply:
        return json_error(200, "unreachable")

    with pytest.raises(ValueError, match=r"must be Access\.CHANGE"):
        Route("POST", "/reset", Access.READ, handler)
    with pytest.raises(ValueError, match=r"must be Access\.CHANGE"):
        Route("POST", "/reset", Access.OPEN, handler)
    with pytest.raises(ValueError, match="only GET and POST"):
        Route("PUT", "/reset", Access.CHANGE, handler)
    assert Route("POST", "/reset", Access.CHANGE, handler).access is Access.CHANGE
