"""ZeroMQ CURVE for tcp:// transports: the workflow's key pairs, and sockets that require them.

A workflow has one key set (docs/messaging.md): the hub's (server) key pair and the clients' key
pair,
shared by every loop of the workflow. CURVE alone encrypts but accepts *any* client key pair, so
the hub also runs a ZAP authenticator that admits only the workflow's client public key: a client
without the workflow's keys can neither read nor write.

Keys are Z85 text (40 characters, 32 bytes of key material); on disk a JSON object with the four
fields below (mode 0600) and the workflow's HTTP control token (:mod:`._token`); in pods the
four ``OSTINATO_CURVE_*`` variables, from one Secret.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import os
import struct
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import zmq
from zmq.utils import z85

from ._token import CONTROL_TOKEN_FIELD, generate_control_token, write_private_file

__all__ = [
    "ENV_VARS",
    "ZAP_DOMAIN",
    "CurveKeyError",
    "CurveKeys",
    "ServerSecurity",
    "generate_keys",
    "keys_command",
    "keys_from_env",
    "load_keys",
    "save_keys",
    "secure_client",
]

log = logging.getLogger("ostinato.hub.security")

#: ZAP domain of the hub's secured sockets; the authenticator answers for this domain only.
ZAP_DOMAIN = "ostinato"

#: Environment variable per key field (how pods get the workflow's Secret).
ENV_VARS: Mapping[str, str] = {
    "server_public": "OSTINATO_CURVE_SERVER_PUBLIC",
    "server_secret": "OSTINATO_CURVE_SERVER_SECRET",
    "client_public": "OSTINATO_CURVE_CLIENT_PUBLIC",
    "client_secret": "OSTINATO_CURVE_CLIENT_SECRET",
}

_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP RFC; one per context
_ZAP_VERSION = b"1.0"
_POLL_MS = 500  # the ZAP thread rechecks its stop flag at least this often
_STOP_TIMEOUT_S = 10.0
_KEY_LENGTH = 40  # Z85 text of a 32-byte CURVE key
_Z85_ALPHABET = frozenset(z85.Z85CHARS)
_MAX_WARNED_KEYS = 1000


class CurveKeyError(ValueError):
    """A key set that is missing, incomplete or invalid; the message names where and which."""


def _check_key(value: object, where: str) -> bytes:
    """The key as Z85 bytes, or CurveKeyError naming ``where``."""
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            raise CurveKeyError(f"{where}: not Z85 text (non-ASCII characters)") from None
    if not isinstance(value, bytes):
        raise CurveKeyError(f"{where}: expected Z85 text, got {type(value).__name__}")
    if len(value) != _KEY_LENGTH:
        raise CurveKeyError(
            f"{where}: a CURVE key is {_KEY_LENGTH} Z85 characters, got {len(value)}"
        )
    bad = sorted({chr(c) for c in value if c not in _Z85_ALPHABET})
    if bad:
        raise CurveKeyError(f"{where}: not Z85 text (invalid characters {''.join(bad)!r})")
    try:
        raw = z85.decode(value)
    except (ValueError, KeyError, struct.error):  # a 5-character group above 2**32 - 1
        raise CurveKeyError(f"{where}: not Z85 text (a 5-character group out of range)") from None
    if z85.encode(raw) != value:  # pragma: no cover - decode is exact for in-range groups
        raise CurveKeyError(f"{where}: not Z85 text (a 5-character group out of range)")
    return value


def _check_pair(public: bytes, secret: bytes, public_where: str, secret_where: str) -> None:
    if not hmac.compare_digest(zmq.curve_public(secret), public):
        raise CurveKeyError(f"{secret_where} is not the secret key of {public_where}")


@dataclass(frozen=True)
class CurveKeys:
    """A workflow's key set, each key Z85 text as bytes (40 bytes). Secrets never appear in repr."""

    server_public: bytes
    #: None in a loop's key set: clients never need the hub's secret (least privilege in pods).
    server_secret: bytes | None = field(repr=False)
    client_public: bytes
    client_secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "server_secret":
                continue
            object.__setattr__(self, f.name, _check_key(value, f.name))
        if self.server_secret is not None:
            _check_pair(self.server_public, self.server_secret, "server_public", "server_secret")
        _check_pair(self.client_public, self.client_secret, "client_public", "client_secret")

    def as_text(self) -> dict[str, str]:
        """The fields as Z85 strings (the JSON file's content); a client set has three."""
        return {
            f.name: getattr(self, f.name).decode("ascii")
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


def _validated(values: Mapping[str, object], where: Mapping[str, str]) -> CurveKeys:
    """CurveKeys from raw values; errors name ``where[field]`` (a file field or a variable).
    ``server_secret`` may be absent (a loop's set)."""
    checked: dict[str, bytes | None] = {
        name: _check_key(values[name], where[name]) for name in ENV_VARS if name in values
    }
    checked.setdefault("server_secret", None)
    for side in ("server", "client"):
        pub, sec = f"{side}_public", f"{side}_secret"
        public, secret = checked[pub], checked[sec]
        if public is not None and secret is not None:
            _check_pair(public, secret, where[pub], where[sec])
    return CurveKeys(**checked)  # type: ignore[arg-type]


def generate_keys() -> CurveKeys:
    """A fresh key set: a server pair for the hub and a client pair for the loops."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return CurveKeys(server_public, server_secret, client_public, client_secret)


def _keys_json(keys: CurveKeys, control_token: str | None = None) -> str:
    fields = keys.as_text()
    if control_token is not None:
        fields[CONTROL_TOKEN_FIELD] = control_token
    return json.dumps(fields, indent=2) + "\n"


def save_keys(
    keys: CurveKeys,
    path: str | Path,
    *,
    overwrite: bool = True,
    control_token: str | None = None,
) -> None:
    """Write ``keys`` (and the workflow's ``control_token``, when given) as JSON to ``path``,
    mode 0600, atomically (see :func:`write_private_file`): readers see either the old file or
    the complete new one, and with ``overwrite=False`` an existing ``path`` is never replaced
    (FileExistsError)."""
    write_private_file(path, _keys_json(keys, control_token), overwrite=overwrite)


def load_keys(path: str | Path) -> CurveKeys:
    """The key set in the JSON file ``path``; CurveKeyError naming the file (and field) if bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"{path}: cannot read the CURVE key file: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CurveKeyError(f"{path}: not a JSON CURVE key file: {exc}") from None
    if not isinstance(data, dict):
        raise CurveKeyError(f"{path}: expected a JSON object with fields {', '.join(ENV_VARS)}")
    missing = [name for name in ENV_VARS if name not in data]
    if missing:
        raise CurveKeyError(f"{path}: missing field(s) {', '.join(missing)}")
    return _validated(data, {name: f"{path}: field {name!r}" for name in ENV_VARS})


def keys_from_env(environ: Mapping[str, str] = os.environ) -> CurveKeys | None:
    """The key set from the ``OSTINATO_CURVE_*`` variables; None when none of them is set.

    A variable that is present counts as set, even when empty, so that a half-provisioned pod
    fails loudly instead of running without CURVE.
    """
    present = {name: var for name, var in ENV_VARS.items() if var in environ}
    if not present:
        return None
    missing = [
        var for name, var in ENV_VARS.items() if name not in present and name != "server_secret"
    ]
    if missing:
        raise CurveKeyError(
            f"CURVE keys are partly configured: {', '.join(sorted(present.values()))} set "
            f"but {', '.join(missing)} missing (set all four, or all but "
            f"{ENV_VARS['server_secret']} for a loop, or none)"
        )
    values = {name: environ[var] for name in present for var in [ENV_VARS[name]]}
    return _validated(
        values, {name: f"environment variable {var}" for name, var in ENV_VARS.items()}
    )


def keys_command(out: Path | None) -> int:
    """``ostinato keys [--out FILE]``: generate a key set and the workflow's control token;
    write them to ``out`` or print them."""
    keys, token = generate_keys(), generate_control_token()
    if out is None:
        sys.stdout.write(_keys_json(keys, token))
        return 0
    try:
        save_keys(keys, out, overwrite=False, control_token=token)
    except FileExistsError:
        print(f"ostinato keys: {out} already exists; not overwriting it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ostinato keys: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    print(
        f"ostinato keys: wrote a new CURVE key set and control token to {out} (mode 0600)",
        file=sys.stderr,
    )
    return 0


def _require_unused(socket: zmq.Socket[Any], what: str) -> None:
    if socket.getsockopt(zmq.LAST_ENDPOINT):
        raise RuntimeError(
            f"{what} must be called before bind/connect: options set later do not apply to "
            "existing endpoints, which would stay unencrypted"
        )


class _ZapHandler(threading.Thread):
    """The context's ZAP handler (RFC 27): admits the workflow's client key and nothing else.

    Not pyzmq's ThreadAuthenticator: that one drives blocking sockets through an asyncio poller
    in its thread, names its pipe after ``id(self)`` (reused addresses collide in libzmq's inproc
    names until the reaper runs), and its stop() sends on a PAIR that blocks forever once the
    thread is gone. This is a plain level-triggered poll loop that owns its sockets, answers every
    request (refusing on any doubt), and always exits: on the stop signal, on the stop flag
    (checked every _POLL_MS), or when the context terminates.
    """

    def __init__(self, ctx: zmq.Context[Any], client_public: bytes) -> None:
        super().__init__(name="ostinato-zap", daemon=True)
        self._client_public = client_public
        self._lock = threading.Lock()
        self._rejected = 0
        self._warned: set[bytes] = set()
        self._stopping = threading.Event()
        # Created and bound here, then used only by the thread (start() is a memory barrier).
        zap: zmq.Socket[Any] = ctx.socket(zmq.REP)
        zap.setsockopt(zmq.LINGER, 0)
        try:
            zap.bind(_ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            zap.close(linger=0)
            if exc.errno == errno.EADDRINUSE:
                raise RuntimeError(
                    "this ZeroMQ context already has a ZAP handler (one ServerSecurity per context)"
                ) from exc
            raise
        # The stop signal: owner holds no socket between start and stop, so a ctx.term() without
        # close() still completes (the thread sees ETERM and closes its own sockets).
        self._ctx = ctx
        self._stop_endpoint = f"inproc://ostinato.zap-stop.{uuid.uuid4().hex}"
        self._stop_rx: zmq.Socket[Any] = ctx.socket(zmq.PULL)
        self._stop_rx.setsockopt(zmq.LINGER, 0)
        self._stop_rx.bind(self._stop_endpoint)
        self._zap = zap

    @property
    def rejected(self) -> int:
        with self._lock:
            return self._rejected

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._zap, zmq.POLLIN)
        poller.register(self._stop_rx, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                events = dict(poller.poll(_POLL_MS))
                if self._stop_rx in events:
                    break
                if self._zap in events:
                    request = self._zap.recv_multipart()
                    self._zap.send_multipart(self._answer(request))
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:  # pragma: no cover - unexpected socket failure
                log.exception("the ZAP handler failed; secured sockets now refuse every client")
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        # Unbind first: libzmq frees an inproc name when it unbinds, but on close only once its
        # reaper gets to the socket, and a new ServerSecurity must be able to bind at once.
        for sock, endpoint in ((self._zap, _ZAP_ENDPOINT), (self._stop_rx, self._stop_endpoint)):
            if not sock.closed:
                with contextlib.suppress(zmq.ZMQError):
                    sock.unbind(endpoint)
                sock.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        request_id = request[1] if len(request) > 1 else b""
        try:
            status, text, user_id = self._decide(request)
        except Exception:  # pragma: no cover - a bug here must refuse, never kill the thread
            log.exception("the ZAP handler could not judge a handshake; refusing it")
            status, text, user_id = b"500", b"internal error", b""
        if status != b"200":
            with self._lock:
                self._rejected += 1
        return [_ZAP_VERSION, request_id, status, text, user_id, b""]

    def _decide(self, request: list[bytes]) -> tuple[bytes, bytes, bytes]:
        if len(request) < 6 or request[0] != _ZAP_VERSION:
            log.warning("refused a handshake: malformed ZAP request")
            return b"400", b"malformed ZAP request", b""
        domain, address, mechanism, credentials = request[2], request[3], request[5], request[6:]
        peer = address.decode("utf-8", "replace")
        if domain != ZAP_DOMAIN.encode() or mechanism != b"CURVE" or len(credentials) != 1:
            log.warning(
                "refused a handshake from %s: domain %r, mechanism %r (this handler admits only "
                "CURVE in domain %r)",
                peer,
                domain,
                mechanism,
                ZAP_DOMAIN,
            )
            return b"400", b"CURVE required", b""
        key = z85.encode(credentials[0])
        if hmac.compare_digest(key, self._client_public):
            return b"200", b"OK", key
        with self._lock:
            first = key not in self._warned and len(self._warned) < _MAX_WARNED_KEYS
            if first:
                self._warned.add(key)
        if first:
            log.warning(
                "refused a CURVE client at %s with an unknown public key %s; "
                "further attempts with this key are only counted",
                peer,
                key.decode("ascii"),
            )
        return b"400", b"unknown client key", b""

    def stop(self) -> None:
        """Stop the thread and free the context's ZAP endpoint (idempotent)."""
        self._stopping.set()
        if self.ident is None:  # never started: the sockets are still ours
            self._close_sockets()
            return
        if not self.is_alive():
            return
        with contextlib.suppress(zmq.ZMQError):  # a terminated context: the thread is leaving
            poke: zmq.Socket[Any] = self._ctx.socket(zmq.PUSH)
            try:
                poke.connect(self._stop_endpoint)
                poke.send(b"", zmq.NOBLOCK)
            finally:
                poke.close(linger=_POLL_MS)
        if self.is_alive():
            self.join(_STOP_TIMEOUT_S)
            if self.is_alive():  # pragma: no cover - it wakes up every _POLL_MS at the latest
                log.error("the ZAP handler thread did not stop within %s s", _STOP_TIMEOUT_S)


class ServerSecurity:
    """Owns a context's ZAP authenticator; makes server sockets require the workflow's client key.

    One per context (ZAP is per context): constructing it starts the authenticator, so it runs
    before any secured socket binds. close() it when the hub stops (``ctx.term()`` stops it too);
    secured sockets that outlive it refuse every client (ZAP_ENFORCE_DOMAIN: fail closed).
    Sockets it does not secure (NULL mechanism, no ZAP domain: inproc/ipc) never consult it.
    """

    def __init__(self, ctx: zmq.Context[Any], keys: CurveKeys) -> None:
        if keys.server_secret is None:
            raise CurveKeyError(
                f"the hub needs the server's secret key ({ENV_VARS['server_secret']} or the key "
                "file's server_secret); this key set is a loop's"
            )
        self._ctx = ctx
        self._keys = keys
        self._closed = False
        self._zap = _ZapHandler(ctx, keys.client_public)
        try:
            self._zap.start()
        except BaseException:  # pragma: no cover - cannot start a thread
            self._zap.stop()
            raise

    def secure(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` a CURVE server admitting only the workflow's client key (before bind)."""
        if self._closed:
            raise RuntimeError("ServerSecurity is closed")
        if socket.context is not self._ctx:
            raise ValueError(
                "the socket belongs to another context, whose handshakes this authenticator "
                "never sees; create it from the context given to ServerSecurity"
            )
        _require_unused(socket, "ServerSecurity.secure()")
        assert self._keys.server_secret is not None  # checked in __init__
        socket.setsockopt(zmq.CURVE_SECRETKEY, self._keys.server_secret)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self._keys.server_public)
        socket.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        try:
            # Fail closed: without it, libzmq admits every CURVE client when no ZAP handler runs.
            socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        except (zmq.ZMQError, AttributeError):  # pragma: no cover - libzmq without the option
            log.warning(
                "libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN: close secured sockets before "
                "ServerSecurity, or they will admit any client key"
            )
        socket.setsockopt(zmq.CURVE_SERVER, 1)

    @property
    def rejected(self) -> int:
        """How many handshakes the ZAP handler refused (mostly: an unknown client public key).

        A rejected client reconnects every ``reconnect_ivl`` (100 ms by default), and each attempt
        counts. Clients refused before ZAP are not counted: no CURVE, or the wrong server key.
        """
        return self._zap.rejected

    def close(self) -> None:
        """Stop the authenticator (idempotent). Secured sockets then refuse every client."""
        if self._closed:
            return
        self._closed = True
        self._zap.stop()

    def __enter__(self) -> ServerSecurity:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def secure_client(socket: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``socket`` a CURVE client of the workflow's hub (before connect)."""
    _require_unused(socket, "secure_client()")
    socket.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
