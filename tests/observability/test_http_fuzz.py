"""Fuzz: 5,000 malformed, oversized, slow or unauthenticated requests to each endpoint, over raw
sockets and from a seeded RNG, then the server still serves /healthz and an authenticated
POST /control, no request without the token changed any state, no request crashed a route,
every connection was let go, and the token was never logged or served."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from ostinato._observe._http import HttpSettings, ObservabilityServer

from .support import TOKEN, CountingSource, exchange, request, status_code, until

SEED = 20261206
PER_ENDPOINT = 5000
#: Of each endpoint's requests, these many dribble their bytes (slowloris), in parallel.
SLOW_PER_ENDPOINT = 40
SLOW_AT_ONCE = 20
FAST_AT_ONCE = 8
ENDPOINTS = ("/healthz", "/readyz", "/status", "/metrics", "/control")
SETTINGS = HttpSettings(request_timeout_seconds=0.5, max_connections=64)
#: What any answer during the fuzz may be; 500 (a route that crashed) is not among them.
EXPECTED = {200, 400, 401, 404, 405, 411, 413, 414, 415, 431, 503, 505}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
BAD_VERSIONS = ["HTTP/1", "HTTP/x.y", "HTTP/1.1.1", "HTTPS/1.1", "HTTP/99.0", "HTTP/", "http/1.1"]
BAD_LENGTHS = ["-1", "abc", "1e9", "9" * 25, "", " ", "0x10", "\u0661\u0662", "10, 10", "+5"]
BAD_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"42",
    b'"paused"',
    b'{"state": 5}',
    b'{"state": "paused", "loop": 3}',
    b'{"loop": "a"}',
    b'{"state": "PAUSED"}',
    b'{"state": "paused", "extra": true}',
    b'{"state": "paused"',
    b"\xff\xfe{}",
    b'{"state": "pa\\u0000used"}',
]
GOOD_BODY = b'{"loop": "a", "state": "paused"}'


def _line(rng: random.Random, method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\n".encode()


def garbage_line(rng: random.Random, path: str) -> bytes:
    return rng.randbytes(rng.randint(1, 300)).replace(b"\n", b"") + b"\r\n\r\n"


def bad_method(rng: random.Random, path: str) -> bytes:
    method = rng.choice(
        [*METHODS, "get", "G ET", "P0ST", "X" * rng.randint(1, 60), "\u00e9T", "POST\x00"]
    )
    return (method + f" {path} HTTP/1.1\r\n\r\n").encode("utf-8", "replace")


def bad_version(rng: random.Random, path: str) -> bytes:
    return f"GET {path} {rng.choice(BAD_VERSIONS)}\r\n\r\n".encode()


def bad_headers(rng: random.Random, path: str) -> bytes:
    head = _line(rng, rng.choice(["GET", "POST"]), path)
    kind = rng.randrange(6)
    if kind == 0:
        head += b"no colon here\r\n"
    elif kind == 1:
        head += b"X-Space : value\r\n continued\r\n\tmore\r\n"
    elif kind == 2:
        head += b"X-Nul: a\x00b\r\nX-High: \xff\xfe\xfd\r\n"
    elif kind == 3:
        head += b"".join(f"X-{i}: {i}\r\n".encode() for i in range(rng.randint(101, 300)))
    elif kind == 4:
        head += b"X-Lf-Only: yes\n" * rng.randint(1, 5)
    else:
        head += rng.randbytes(rng.randint(1, 500)) + b"\r\n"
    return head + b"\r\n"


def huge_header(rng: random.Random, path: str) -> bytes:
    size = rng.randint(17_000, 70_000)
    return _line(rng, "GET", path) + b"X-Huge: " + b"h" * size + b"\r\n\r\n"


def bad_content_length(rng: random.Random, path: str) -> bytes:
    token = TOKEN if rng.random() < 0.5 else _wrong_token(rng)  # the token, a bad length
    head = _line(rng, "POST", path) + f"Authorization: Bearer {token}\r\n".encode()
    lengths = rng.choice([[rng.choice(BAD_LENGTHS)], ["10", "12"], []])
    head += b"".join(f"Content-Length: {v}\r\n".encode() for v in lengths)
    if rng.random() < 0.3:
        head += b"Transfer-Encoding: chunked\r\n"
    return head + b"Content-Type: application/json\r\n\r\n" + GOOD_BODY


def truncated_body(rng: random.Random, path: str) -> bytes:
    body = GOOD_BODY[: rng.randrange(len(GOOD_BODY))]
    token = TOKEN if rng.random() < 0.5 else _wrong_token(rng)  # the token, but not all the body
    return (
        _line(rng, "POST", path)
        + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(GOOD_BODY) + rng.randint(1, 500)}\r\n\r\n".encode()
        + body
    )


def invalid_json(rng: random.Random, path: str) -> bytes:
    body = rng.choice([*BAD_BODIES, rng.randbytes(rng.randint(1, 200))])
    token = TOKEN if rng.random() < 0.5 else _wrong_token(rng)  # a right token, a wrong body
    return request("POST", path, token=token, body=body)


def wrong_token(rng: random.Random, path: str) -> bytes:
    scheme = rng.choice(["Bearer", "Bearer", "Bearer", "Basic", "Token", "", "Bearer\t"])
    auth = {"Authorization": f"{scheme} {_wrong_token(rng)}"}
    if rng.random() < 0.2:
        auth = {}  # none at all
    elif rng.random() < 0.2:  # the right one beside a wrong one: two headers, refused
        auth["authorization"] = f"Bearer {TOKEN}"
    return request("POST", path, body=GOOD_BODY, headers=auth)


def wrong_media(rng: random.Random, path: str) -> bytes:
    ctype = rng.choice(["text/plain", "application/x-www-form-urlencoded", "", "json", "*/*"])
    token = TOKEN if rng.random() < 0.5 else _wrong_token(rng)  # the token, a wrong type
    return (
        _line(rng, "POST", path)
        + f"Authorization: Bearer {token}\r\nContent-Type: {ctype}\r\n".encode()
        + f"Content-Length: {len(GOOD_BODY)}\r\n\r\n".encode()
        + GOOD_BODY
    )


def oversized_body(rng: random.Random, path: str) -> bytes:
    declared = rng.randint(65_537, 10 * 2**20)
    token = TOKEN if rng.random() < 0.5 else _wrong_token(rng)
    return (
        _line(rng, "POST", path)
        + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + rng.randbytes(rng.randint(0, 20_000))
    )


def odd_target(rng: random.Random, path: str) -> bytes:
    junk = "".join(rng.choice("abc%00/?#&=;..\\~") for _ in range(rng.randint(1, 80)))
    target = rng.choice([path + "?" + junk, path + "/" + junk, junk, "*", "http://x" + path])
    return f"GET {target} HTTP/1.1\r\n\r\n".encode()


KINDS: list[Callable[[random.Random, str], bytes]] = [
    garbage_line,
    bad_method,
    bad_version,
    bad_headers,
    huge_header,
    bad_content_length,
    truncated_body,
    invalid_json,
    wrong_token,
    wrong_media,
    oversized_body,
    odd_target,
]


def _wrong_token(rng: random.Random) -> str:
    """Never the token: random text, or the token changed in one way or another."""
    pick = rng.randrange(5)
    if pick == 0:
        chars = list(TOKEN)
        i = rng.randrange(len(chars))
        chars[i] = "A" if chars[i] != "A" else "B"
        wrong = "".join(chars)
    elif pick == 1:
        wrong = TOKEN[: rng.randrange(len(TOKEN))]
    elif pick == 2:
        wrong = TOKEN + rng.choice(["x", "=", " x"])
    elif pick == 3:
        wrong = TOKEN.swapcase()
    else:
        wrong = "".join(rng.choice("abcdefXYZ0123-_") for _ in range(rng.randint(0, 80)))
    return wrong if wrong.strip() != TOKEN else wrong + "x"


@dataclass
class Plan:
    fast: list[bytes]
    slow: list[bytes]


def plan(rng: random.Random) -> Plan:
    fast, slow = [], []
    for path in ENDPOINTS:
        for _ in range(SLOW_PER_ENDPOINT):
            slow.append(rng.choice(KINDS)(rng, path))
        for _ in range(PER_ENDPOINT - SLOW_PER_ENDPOINT):
            fast.append(rng.choice(KINDS)(rng, path))
    rng.shuffle(fast)
    return Plan(fast, slow)


def send_fast(port: int, data: bytes) -> int | None:
    try:
        return status_code(exchange(port, data, timeout=10))
    except OSError:  # refused mid-send, reset: the server hung up on garbage, as it may
        return None


def send_slow(port: int, data: bytes, stop: threading.Event) -> float:
    """Dribble ``data`` 64 bytes at a time every 20 ms until the server hangs up; how long
    the server kept the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for i in range(0, len(data), 64):
            if stop.is_set():
                break
            try:
                sock.send(data[i : i + 64])
            except OSError:
                break
            time.sleep(0.02)
        else:
            try:  # all sent (short requests): the server answers and closes
                while sock.recv(65536):
                    pass
            except OSError:
                pass
    return time.monotonic() - started


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("ostinato")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.timeout(300)
def test_the_server_survives_the_fuzz_and_only_the_token_changes_state(
    logged: list[logging.LogRecord],
) -> None:
    rng = random.Random(SEED)
    work = plan(rng)
    assert len(work.fast) + len(work.slow) == PER_ENDPOINT * len(ENDPOINTS)
    source = CountingSource()
    stop = threading.Event()
    started = time.monotonic()
    with ObservabilityServer(source, settings=SETTINGS, control_token=TOKEN) as server:
        with ThreadPoolExecutor(SLOW_AT_ONCE) as slow_pool:
            slow = [slow_pool.submit(send_slow, server.port, d, stop) for d in work.slow]
            with ThreadPoolExecutor(FAST_AT_ONCE) as fast_pool:
                codes = Counter(fast_pool.map(lambda d: send_fast(server.port, d), work.fast))
            held = [f.result(timeout=60) for f in slow]
        took = time.monotonic() - started
        print(f"\n{len(work.fast)} fast + {len(work.slow)} slow requests in {took:.1f} s: {codes}")
        print(f"slow connections held at most {max(held):.2f} s; refused: {server.refused}")

        assert source.calls == [], "a request without the token changed the desired state"
        assert set(codes) - {None} <= EXPECTED, codes
        assert codes[200] > 0  # some GETs with odd query strings were still served
        # Every slow request let go by the deadline (0.5 s) and the dribble's own pace.
        assert max(held) < 5, max(held)
        assert until(lambda: server.busy == 0, 10), f"{server.busy} connections still held"

        healthz = exchange(server.port, request("GET", "/healthz"))
        assert status_code(healthz) == 200
        answer = exchange(server.port, request("POST", "/control", token=TOKEN, body=GOOD_BODY))
        assert status_code(answer) == 200, answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"loops": {"a": "paused"}}
        assert len(source.calls) == 1
        status = exchange(server.port, request("GET", "/status"))
        assert TOKEN.encode() not in status
    stop.set()
    assert len(logged) > PER_ENDPOINT  # every request logged a line: the check below can fail
    for record in logged:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in (record.exc_text or "")
