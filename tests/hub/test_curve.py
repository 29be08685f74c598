"""CURVE on tcp://: only a client holding the workflow's keys can read from or write to the hub.

Real sockets on 127.0.0.1. Every wait is bounded: socket polls with a timeout, the server's
monitor events for handshake outcomes, and a deadline loop for the rejection counter.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from ostinato._messaging._security import (
    ENV_VARS,
    ZAP_DOMAIN,
    CurveKeyError,
    CurveKeys,
    ServerSecurity,
    generate_keys,
    keys_command,
    keys_from_env,
    load_keys,
    save_keys,
    secure_client,
)
from ostinato._messaging._token import check_control_token, token_from_keys_file

TIMEOUT_MS = 5000  # upper bound for anything that must happen
QUIET_MS = 300  # how long "nothing arrives" is watched

HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
}


@dataclass
class Hub:
    ctx: zmq.Context[Any]
    security: ServerSecurity
    router: zmq.Socket[Any]
    monitor: zmq.Socket[Any]
    endpoint: str


@pytest.fixture
def keys() -> CurveKeys:
    return generate_keys()


@pytest.fixture
def hub(keys: CurveKeys) -> Iterator[Hub]:
    ctx: zmq.Context[Any] = zmq.Context()
    security = ServerSecurity(ctx, keys)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    security.secure(router)
    monitor = router.get_monitor_socket()
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield Hub(ctx, security, router, monitor, f"tcp://127.0.0.1:{port}")
    finally:
        router.disable_monitor()
        monitor.close(linger=0)
        router.close(linger=0)
        security.close()
        ctx.term()


Connect = Callable[..., zmq.Socket[Any]]


@pytest.fixture
def connect(hub: Hub) -> Iterator[Connect]:
    """A DEALER in its own context (another host, as far as ZeroMQ knows) connected to the hub."""
    ctx: zmq.Context[Any] = zmq.Context()
    sockets: list[zmq.Socket[Any]] = []

    def make(identity: bytes, keys: CurveKeys | None = None) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
        sockets.append(sock)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, identity)
        if keys is not None:
            secure_client(sock, keys)
        sock.connect(hub.endpoint)
        return sock

    try:
        yield make
    finally:
        for sock in sockets:
            sock.close(linger=0)
        ctx.term()


def wait_for_event(monitor: zmq.Socket[Any], wanted: AbstractSet[int]) -> int:
    """The first of ``wanted`` among the server's monitor events, within TIMEOUT_MS."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    seen: list[int] = []
    while (remaining := deadline - time.monotonic()) > 0:
        if monitor.poll(int(remaining * 1000) + 1, zmq.POLLIN):
            event = int(recv_monitor_message(monitor)["event"])
            seen.append(event)
            if event in wanted:
                return event
    pytest.fail(f"none of {sorted(wanted)} within {TIMEOUT_MS} ms; saw {seen}")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {TIMEOUT_MS} ms: {what}")
        time.sleep(0.005)


def recv_within(sock: zmq.Socket[Any], timeout_ms: int = TIMEOUT_MS) -> list[zmq.Frame]:
    assert sock.poll(timeout_ms, zmq.POLLIN), f"nothing received within {timeout_ms} ms"
    return sock.recv_multipart(copy=False)


def assert_shut_out(hub: Hub, client: zmq.Socket[Any], identity: bytes) -> None:
    """The client can neither write to the hub nor read what the hub routes to it."""
    assert hub.router.poll(QUIET_MS, zmq.POLLIN) == 0, "the hub received from a refused client"
    with pytest.raises(zmq.ZMQError) as info:
        hub.router.send_multipart([identity, b"for your eyes only"])
    assert info.value.errno == errno.EHOSTUNREACH
    assert client.poll(QUIET_MS, zmq.POLLIN) == 0, "a refused client received a message"


# --- sockets ---------------------------------------------------------------------------------


def test_right_keys_exchange_both_ways(hub: Hub, connect: Connect, keys: CurveKeys) -> None:
    client = connect(b"loop-1", keys)
    client.send(b"hello hub")

    identity, body = recv_within(hub.router)
    assert (identity.bytes, body.bytes) == (b"loop-1", b"hello hub")
    # ZAP authenticated the sender: libzmq stamps the Z85 client key as the User-Id.
    assert body.get("User-Id") == keys.client_public.decode()
    assert wait_for_event(hub.monitor, {zmq.EVENT_HANDSHAKE_SUCCEEDED})

    hub.router.send_multipart([b"loop-1", b"hello loop"])  # ROUTER_MANDATORY: routable
    assert [f.bytes for f in recv_within(client)] == [b"hello loop"]
    assert hub.security.rejected == 0


def test_socket_options(hub: Hub, keys: CurveKeys) -> None:
    # (pyzmq cannot read CURVE keys back; that the right ones are set is what the handshakes prove)
    assert hub.router.getsockopt(zmq.CURVE_SERVER) == 1
    assert hub.router.getsockopt(zmq.MECHANISM) == zmq.CURVE
    assert hub.router.getsockopt_string(zmq.ZAP_DOMAIN) == ZAP_DOMAIN
    assert hub.router.getsockopt(zmq.ZAP_ENFORCE_DOMAIN) == 1

    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as client:
        secure_client(client, keys)
        assert client.getsockopt(zmq.CURVE_SERVER) == 0
        assert client.getsockopt(zmq.MECHANISM) == zmq.CURVE
        client.close(linger=0)


def test_other_client_keys_can_neither_send_nor_receive(
    hub: Hub, connect: Connect, keys: CurveKeys
) -> None:
    other = generate_keys()
    intruder_keys = CurveKeys(
        keys.server_public, keys.server_secret, other.client_public, other.client_secret
    )
    client = connect(b"intruder", intruder_keys)
    client.send(b"let me in")

    assert wait_for_event(hub.monitor, {zmq.EVENT_HANDSHAKE_FAILED_AUTH})
    wait_until(lambda: hub.security.rejected >= 1, "the ZAP callback counts the refusal")
    assert_shut_out(hub, client, b"intruder")


def test_plain_client_gets_nothing_through(hub: Hub, connect: Connect) -> None:
    client = connect(b"plain")
    client.send(b"no curve here")

    assert wait_for_event(hub.monitor, HANDSHAKE_FAILED)
    assert_shut_out(hub, client, b"plain")
    assert hub.security.rejected == 0  # refused by the mechanism, before ZAP


def test_wrong_server_key_gets_nothing_through(hub: Hub, connect: Connect, keys: CurveKeys) -> None:
    other = generate_keys()
    wrong_server = CurveKeys(
        other.server_public, other.server_secret, keys.client_public, keys.client_secret
    )
    client = connect(b"lost", wrong_server)
    client.send(b"hello?")

    assert wait_for_event(hub.monitor, HANDSHAKE_FAILED)
    assert_shut_out(hub, client, b"lost")
    assert hub.security.rejected == 0  # its HELLO does not decrypt: refused before ZAP


def test_closed_security_fails_closed(hub: Hub, connect: Connect, keys: CurveKeys) -> None:
    """Without a ZAP handler libzmq would admit any CURVE client; ZAP_ENFORCE_DOMAIN forbids it."""
    hub.security.close()
    hub.security.close()  # idempotent
    client = connect(b"late", keys)
    client.send(b"anyone home?")

    assert wait_for_event(hub.monitor, HANDSHAKE_FAILED)
    assert_shut_out(hub, client, b"late")
    spare = hub.ctx.socket(zmq.ROUTER)
    try:
        with pytest.raises(RuntimeError, match="closed"):
            hub.security.secure(spare)
    finally:
        spare.close(linger=0)


def test_secure_refuses_misuse(hub: Hub, keys: CurveKeys) -> None:
    with pytest.raises(RuntimeError, match="one ServerSecurity per context"):
        ServerSecurity(hub.ctx, keys)

    bound = hub.ctx.socket(zmq.ROUTER)
    try:
        bound.bind_to_random_port("tcp://127.0.0.1")
        with pytest.raises(RuntimeError, match="before bind"):
            hub.security.secure(bound)
    finally:
        bound.close(linger=0)

    with zmq.Context() as other_ctx, other_ctx.socket(zmq.ROUTER) as foreign:
        with pytest.raises(ValueError, match="another context"):
            hub.security.secure(foreign)
        foreign.close(linger=0)

    with zmq.Context() as client_ctx, client_ctx.socket(zmq.DEALER) as client:
        client.setsockopt(zmq.LINGER, 0)
        client.connect(hub.endpoint)
        with pytest.raises(RuntimeError, match="before bind/connect"):
            secure_client(client, keys)


def test_a_context_can_get_a_new_authenticator_after_close(keys: CurveKeys) -> None:
    """close() frees the context's ZAP endpoint at once (a restarted hub may reuse the context)."""
    with zmq.Context() as ctx:
        for _ in range(5):
            ServerSecurity(ctx, keys).close()
        with ServerSecurity(ctx, keys) as security:
            assert security.rejected == 0


def test_zap_handler_admits_only_the_client_key_in_curve(hub: Hub, keys: CurveKeys) -> None:
    """The policy itself, asked directly over ZAP (RFC 27) like libzmq does."""
    asker = hub.ctx.socket(zmq.REQ)
    asker.setsockopt(zmq.LINGER, 0)
    asker.connect("inproc://zeromq.zap.01")

    def ask(*frames: bytes) -> list[bytes]:
        asker.send_multipart(list(frames))
        return [f.bytes for f in recv_within(asker)]

    def request(domain: bytes, mechanism: bytes, *credentials: bytes) -> list[bytes]:
        return ask(b"1.0", b"42", domain, b"10.0.0.7", b"", mechanism, *credentials)

    right = z85.decode(keys.client_public)
    wrong = z85.decode(generate_keys().client_public)
    domain = ZAP_DOMAIN.encode()
    try:
        assert request(domain, b"CURVE", right) == [
            b"1.0",
            b"42",
            b"200",
            b"OK",
            keys.client_public,
            b"",
        ]
        refusals = [
            request(domain, b"CURVE", wrong),
            request(b"elsewhere", b"CURVE", right),
            request(domain, b"NULL"),
            request(domain, b"PLAIN", b"user", b"password"),
            ask(b"2.0", b"42", domain, b"10.0.0.7", b"", b"CURVE", right),
            ask(b"junk"),
        ]
        assert [r[2] for r in refusals] == [b"400"] * len(refusals)
        assert all(r[4] == b"" for r in refusals)  # no user id for the refused
        assert hub.security.rejected == len(refusals)
        assert request(domain, b"CURVE", right)[2] == b"200"  # still serving
    finally:
        asker.close(linger=0)


def test_context_term_without_close_does_not_hang(keys: CurveKeys) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    security = ServerSecurity(ctx, keys)
    term = threading.Thread(target=ctx.term, daemon=True)
    term.start()
    term.join(TIMEOUT_MS / 1000)
    assert not term.is_alive(), "ctx.term() blocked on the ZAP handler's sockets"
    security.close()  # after the context is gone: a no-op


# --- keys ------------------------------------------------------------------------------------


def test_generated_keys_are_valid_pairs(keys: CurveKeys) -> None:
    assert all(len(k) == 40 for k in keys.as_text().values())
    assert zmq.curve_public(keys.server_secret) == keys.server_public
    assert zmq.curve_public(keys.client_secret) == keys.client_public
    assert keys.server_public != keys.client_public
    assert keys != generate_keys()


def test_repr_hides_secrets(keys: CurveKeys) -> None:
    text = repr(keys)
    assert keys.server_public.decode() in text
    assert keys.server_secret.decode() not in text
    assert keys.client_secret.decode() not in text


def test_mismatched_pair_is_refused(keys: CurveKeys) -> None:
    other = generate_keys()
    with pytest.raises(CurveKeyError, match="client_secret is not the secret key of client_public"):
        CurveKeys(keys.server_public, keys.server_secret, keys.client_public, other.client_secret)


def test_save_load_round_trip_mode_0600(tmp_path: Path, keys: CurveKeys) -> None:
    path = tmp_path / "keys.json"
    save_keys(keys, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(path) == keys
    assert load_keys(str(path)) == keys
    assert json.loads(path.read_text()) == keys.as_text()
    assert os.listdir(tmp_path) == ["keys.json"]  # no temporary file left behind


def test_save_replaces_atomically_and_keeps_0600(tmp_path: Path, keys: CurveKeys) -> None:
    path = tmp_path / "keys.json"
    path.write_text("old")
    path.chmod(0o644)
    inode = path.stat().st_ino
    save_keys(keys, path)
    assert path.stat().st_ino != inode  # renamed into place, not rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(path) == keys

    with pytest.raises(FileExistsError):
        save_keys(generate_keys(), path, overwrite=False)
    assert load_keys(path) == keys
    assert os.listdir(tmp_path) == ["keys.json"]


def test_keys_command_writes_then_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "workflow-keys.json"
    assert keys_command(out) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first = load_keys(out)
    capsys.readouterr()

    assert keys_command(out) == 1
    err = capsys.readouterr().err
    assert str(out) in err
    assert "already exists" in err
    assert load_keys(out) == first
    assert os.listdir(tmp_path) == [out.name]


def test_keys_command_prints_json_without_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert keys_command(None) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {*ENV_VARS, "control_token"}
    token = data.pop("control_token")
    assert check_control_token(token, "control_token") == token
    CurveKeys(**{name: value.encode() for name, value in data.items()})


def test_keys_command_writes_a_control_token_beside_the_keys(tmp_path: Path) -> None:
    out = tmp_path / "wf.keys"
    assert keys_command(out) == 0
    token = token_from_keys_file(out)
    assert len(token) >= 32
    assert load_keys(out).client_public  # the CURVE fields load as before
    other = tmp_path / "other.keys"
    assert keys_command(other) == 0
    assert token_from_keys_file(other) != token  # one per workflow


def _valid_text(keys: CurveKeys) -> dict[str, Any]:
    return dict(keys.as_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("client_secret"), "missing field(s) client_secret"),
        (lambda d: d.update(server_public="abc"), "'server_public': a CURVE key is 40"),
        (lambda d: d.update(client_public="~" * 40), "'client_public': not Z85 text"),
        (lambda d: d.update(server_secret="#" * 40), "'server_secret': not Z85 text"),
        (lambda d: d.update(server_secret="é" * 40), "'server_secret': not Z85 text"),
        (lambda d: d.update(client_public=12), "'client_public': expected Z85 text"),
        (
            lambda d: d.update(server_secret=generate_keys().server_secret.decode()),
            "'server_secret' is not the secret key of",
        ),
    ],
)
def test_load_errors_name_the_file_and_field(
    tmp_path: Path, keys: CurveKeys, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    path = tmp_path / "keys.json"
    data = _valid_text(keys)
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CurveKeyError) as info:
        load_keys(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("{not json", "not a JSON"), ("[1, 2]", "expected a JSON object")],
)
def test_load_errors_for_unreadable_files(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CurveKeyError, match=message) as info:
        load_keys(path)
    assert str(path) in str(info.value)


def _env(keys: CurveKeys) -> dict[str, str]:
    text = keys.as_text()
    return {var: text[name] for name, var in ENV_VARS.items()}


def test_keys_from_env_all_and_none(keys: CurveKeys) -> None:
    assert keys_from_env({"PATH": "/bin"}) is None
    assert keys_from_env({**_env(keys), "PATH": "/bin"}) == keys


def test_keys_from_env_defaults_to_os_environ(
    keys: CurveKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    assert keys_from_env() is None
    for var, value in _env(keys).items():
        monkeypatch.setenv(var, value)
    assert keys_from_env() == keys


def test_keys_from_env_partial_names_the_missing(keys: CurveKeys) -> None:
    env = _env(keys)
    del env["OSTINATO_CURVE_CLIENT_SECRET"], env["OSTINATO_CURVE_SERVER_PUBLIC"]
    with pytest.raises(CurveKeyError) as info:
        keys_from_env(env)
    text = str(info.value)
    assert "OSTINATO_CURVE_CLIENT_SECRET" in text
    assert "OSTINATO_CURVE_SERVER_PUBLIC" in text
    assert "set all four" in text


def test_keys_from_env_loop_set_without_server_secret(keys: CurveKeys) -> None:
    env = _env(keys)
    del env["OSTINATO_CURVE_SERVER_SECRET"]
    loop_keys = keys_from_env(env)
    assert loop_keys is not None
    assert loop_keys.server_secret is None
    assert loop_keys.client_secret == keys.client_secret
    assert "server_secret" not in loop_keys.as_text()
    with pytest.raises(CurveKeyError, match="OSTINATO_CURVE_SERVER_SECRET"):
        ServerSecurity(zmq.Context.instance(), loop_keys)


@pytest.mark.parametrize("var", list(ENV_VARS.values()))
@pytest.mark.parametrize("value", ["", "short", "~" * 40])
def test_keys_from_env_invalid_names_the_variable(keys: CurveKeys, var: str, value: str) -> None:
    env = {**_env(keys), var: value}
    with pytest.raises(CurveKeyError, match=f"environment variable {var}"):
        keys_from_env(env)
