"""Talks to one workflow's hub over HTTP: GET /status, and POST /control with the workflow's
control token, with timeouts. The token goes in a header only: never in an error or a log."""

from __future__ import annotations

from typing import Any

import pydantic

from ostinato import DesiredState, WorkflowStatus
from ostinato.lowlevel import ControlReply, ControlRequest, ServerError, request_json

__all__ = ["HubError", "get_status", "post_control"]


class HubError(RuntimeError):
    """The hub could not be reached or answered badly; the message says which and how, and
    ``code`` is the HTTP status of an answer (401: the token was refused)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _request(
    url: str, timeout: float, body: pydantic.BaseModel | None = None, token: str | None = None
) -> Any:
    data = None if body is None else body.model_dump_json().encode()
    try:
        return request_json(url, timeout=timeout, token=token, body=data)
    except ServerError as exc:
        raise HubError(str(exc), exc.code) from None


def get_status(base_url: str, timeout: float) -> WorkflowStatus:
    """The hub's WorkflowStatus. Its loops' iterations_per_second are not used: right after a
    hub restart they span the replicas' reconnection (0, then their whole count); the operator
    takes rates from two of its own reads of one hub incarnation instead."""
    doc = _request(f"{base_url}/status", timeout)
    try:
        return WorkflowStatus.model_validate(doc)
    except ValueError as exc:
        raise HubError(f"{base_url}/status: not a workflow status: {exc}") from None


def post_control(
    base_url: str, loop: str | None, state: DesiredState, timeout: float, *, token: str
) -> dict[str, DesiredState]:
    """Set one loop's (or, with None, every loop's) desired state, with the workflow's control
    token; the hub's desired states."""
    request = ControlRequest(loop=loop, state=state)
    doc = _request(f"{base_url}/control", timeout, request, token)
    try:
        return ControlReply.model_validate(doc).loops
    except ValueError as exc:
        raise HubError(f"{base_url}/control: not a control answer: {exc}") from None
