"""The client side of the HTTP server: `ostinato status` reads a running workflow's /status and
`ostinato control` sets its loops' desired states through POST /control, with its token."""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.error
import urllib.request
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .._model._spec import DesiredState
from .._model._status import WorkflowStatus
from ._http import ControlReply, ControlRequest
from ._tables import format_table

__all__ = ["ServerError", "control_command", "request_json", "status_command"]


class ServerError(RuntimeError):
    """The server could not be reached or refused; the message is one line saying why, and
    ``code`` is the HTTP status of a refusal (401: the token was refused), None otherwise."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def request_json(
    url: str, *, timeout: float, token: str | None = None, body: bytes | None = None
) -> Any:
    """GET ``url`` (POST ``body`` as JSON when given), with ``Authorization: Bearer token``
    when given; the answer's JSON, or ServerError with the server's own one-line error."""
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(2000).decode("utf-8", "replace").strip()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = str(json.loads(detail)["error"])
        detail = detail.splitlines()[0] if detail else str(exc.reason)
        raise ServerError(f"{url}: HTTP {exc.code}: {detail}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ServerError(f"{url}: the answer is not JSON: {exc}") from None


def _one_line(exc: ValueError) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


M = TypeVar("M", bound=BaseModel)


def _fetch(
    command: str,
    target: str,
    model: type[M],
    what: str,
    *,
    timeout: float,
    token: str | None,
    body: bytes | None = None,
) -> tuple[Any, M] | None:
    """``request_json`` and the answer as ``model``; None after printing the one-line error
    of ``ostinato COMMAND``."""
    try:
        doc = request_json(target, timeout=timeout, token=token, body=body)
        return doc, model.model_validate(doc)
    except ServerError as exc:
        print(f"ostinato {command}: {exc}", file=sys.stderr)
    except ValueError as exc:
        print(
            f"ostinato {command}: {target} did not answer {what}: {_one_line(exc)}", file=sys.stderr
        )
    return None


def status_command(url: str, as_json: bool, timeout: float, token: str | None = None) -> int:
    """``ostinato status``: fetch ``URL/status`` and print it as the table ``ostinato run``
    prints (or its JSON)."""
    target = url.rstrip("/") + "/status"
    got = _fetch(
        "status", target, WorkflowStatus, "a workflow status", timeout=timeout, token=token
    )
    if got is None:
        return 1
    doc, status = got
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    rates = {(lp.name, lp.replica): lp.iterations_per_second for lp in status.loops}
    print(f"workflow {status.workflow}")
    print(format_table(status, rates))
    return 0


def control_command(
    url: str,
    loop: str | None,
    state: DesiredState,
    token: str,
    *,
    as_json: bool = False,
    timeout: float = 5.0,
) -> int:
    """``ostinato control``: POST ``{"loop": loop, "state": state}`` to ``URL/control`` and
    print what every loop is now asked to be (a table, or the reply's JSON)."""
    target = url.rstrip("/") + "/control"
    body = ControlRequest(loop=loop, state=state).model_dump_json().encode()
    got = _fetch(
        "control", target, ControlReply, "a control reply", timeout=timeout, token=token, body=body
    )
    if got is None:
        return 1
    doc, reply = got
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    width = max([len("LOOP"), *(len(name) for name in reply.loops)])
    print(f"{'LOOP':<{width}}  DESIRED")
    for name, desired in reply.loops.items():
        print(f"{name:<{width}}  {desired.value}")
    return 0
