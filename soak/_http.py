"""JSON over HTTP to the hub and the loops (/status, /readyz, POST /control), for every host."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["http_json", "ready"]


def http_json(
    url: str,
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
    token: str | None = None,
) -> Any:
    """GET ``url`` (or POST ``body`` to it, with the workflow's control ``token``) and parse
    the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def ready(url: str) -> bool:
    """Does ``url`` (a /readyz) answer 200?"""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False
