"""The workflow's control token: the bearer secret POST /control asks for (docs/running.md).

One per workflow, kept beside its CURVE keys: the ``control_token`` field of the key file that
``ostinato keys`` writes, the variable ``OSTINATO_CONTROL_TOKEN`` in pods (from the workflow's
Secret), or a file of its own (``--control-token-file``; ``ostinato run`` writes one per run).
Errors name where a token came from, never what it is; nothing here logs one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "CONTROL_TOKEN_ENV",
    "CONTROL_TOKEN_FIELD",
    "ControlTokenError",
    "check_control_token",
    "generate_control_token",
    "read_token_file",
    "runtime_token_path",
    "token_file",
    "token_from_env",
    "token_from_keys_file",
    "write_private_file",
]

#: The variable (and the key of the workflow's Secret on Kubernetes) that holds the token.
CONTROL_TOKEN_ENV = "OSTINATO_CONTROL_TOKEN"
#: The token's field in a key file.
CONTROL_TOKEN_FIELD = "control_token"
#: Shortest token accepted: 16 characters of the alphabet below are at least 96 bits.
MIN_CONTROL_TOKEN_CHARS = 16
MAX_CONTROL_TOKEN_CHARS = 1024
#: RFC 6750's b64token characters: what an ``Authorization: Bearer`` header can carry as is.
_TOKEN_ALPHABET = frozenset(string.ascii_letters + string.digits + "-._~+/=")


class ControlTokenError(ValueError):
    """A control token that is missing or unusable; the message names where (never the token)."""


def generate_control_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def check_control_token(value: object, where: str) -> str:
    """``value`` if it is a usable token, else ControlTokenError naming ``where``."""
    if not isinstance(value, str):
        raise ControlTokenError(f"{where}: expected text, got {type(value).__name__}")
    if not MIN_CONTROL_TOKEN_CHARS <= len(value) <= MAX_CONTROL_TOKEN_CHARS:
        raise ControlTokenError(
            f"{where}: a control token has {MIN_CONTROL_TOKEN_CHARS} to "
            f"{MAX_CONTROL_TOKEN_CHARS} characters, this one {len(value)}"
        )
    if not set(value) <= _TOKEN_ALPHABET:
        raise ControlTokenError(
            f"{where}: a control token is made of letters, digits and -._~+/= only"
        )
    return value


def token_from_keys_file(path: str | Path) -> str:
    """The ``control_token`` field of a key file from ``ostinato keys``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlTokenError(f"{path}: cannot read the key file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ControlTokenError(f"{path}: not a JSON key file: {exc}") from None
    if not isinstance(data, dict) or CONTROL_TOKEN_FIELD not in data:
        raise ControlTokenError(
            f"{path}: missing field {CONTROL_TOKEN_FIELD!r} (key files made before control "
            "tokens lack it: make a new set with 'ostinato keys', add the field, or give "
            "--control-token-file)"
        )
    return check_control_token(data[CONTROL_TOKEN_FIELD], f"{path}: field {CONTROL_TOKEN_FIELD!r}")


def token_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The token in ``OSTINATO_CONTROL_TOKEN``; None when the variable is not set (an empty
    one is set, and refused)."""
    if CONTROL_TOKEN_ENV not in environ:
        return None
    where = f"environment variable {CONTROL_TOKEN_ENV}"
    return check_control_token(environ[CONTROL_TOKEN_ENV], where)


def read_token_file(path: str | Path) -> str:
    """The token in a token file (its one line; surrounding whitespace ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlTokenError(f"{path}: cannot read the control token file: {exc}") from None
    return check_control_token(text.strip(), str(path))


def token_file(path: str | Path) -> tuple[str, bool]:
    """``(token, created)``: the token in ``path``, or a new one written there (mode 0600)
    when there is no such file."""
    path = Path(path)
    try:
        return read_token_file(path), False
    except ControlTokenError:
        if path.exists() or path.is_symlink():
            raise
    token = generate_control_token()
    try:
        write_private_file(path, token + "\n", overwrite=False)
    except FileExistsError:  # another process made it meanwhile: theirs counts
        return read_token_file(path), False
    except OSError as exc:
        raise ControlTokenError(f"{path}: cannot write the control token file: {exc}") from None
    return token, True


def runtime_token_path(workflow: str, port: int) -> Path:
    """Where a generated token goes: ``$XDG_RUNTIME_DIR/ostinato/<workflow>-<port>.token``,
    else ``<temp dir>/ostinato-<uid>/...``; the folder is made private (0700) and must be."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        folder = Path(base) / "ostinato"
    else:
        folder = Path(tempfile.gettempdir()) / f"ostinato-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise ControlTokenError(
            f"{folder}: cannot make a folder for control tokens: {exc}"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ControlTokenError(
            f"{folder}: not a private folder of this user (owner, mode 0700): refusing to keep "
            "a control token there; give --control-token-file"
        )
    return folder / f"{workflow}-{port}.token"


def write_private_file(path: str | Path, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path``, mode 0600, atomically (a temporary file, then rename).

    Readers see either the old file or the complete new one. With ``overwrite=False`` an
    existing ``path`` is never replaced (FileExistsError), race-free: the temporary file is
    hard-linked into place, which fails if the name exists.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError when path exists
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover - file systems that refuse it
        pass
    finally:
        os.close(dir_fd)
