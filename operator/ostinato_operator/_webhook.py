"""The admission webhook's server: kopf's, with a self-signed certificate and, in a cluster, a
Service reference instead of a URL (API servers usually cannot resolve `*.svc` names)."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf

from ._certs import self_signed
from ._settings import OperatorSettings

__all__ = ["SERVICE_PORT", "NoWebhook", "build_server"]

#: The port of the webhook Service (templates/webhook.yaml); it forwards to webhook_port.
SERVICE_PORT = 443
_SERVICE_HOST = re.compile(r"^(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9-]+)\.svc$")


class _ServiceWebhookServer(kopf.WebhookServer):
    """Hands kopf a clientConfig naming the Service (namespace, name, port) rather than a URL."""

    def __init__(self, *, service: str, namespace: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.namespace = namespace

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for config in super().__call__(fn):
            out = {k: v for k, v in config.items() if k != "url"}
            out["service"] = {
                "namespace": self.namespace,
                "name": self.service,
                "port": SERVICE_PORT,
                "path": "",
            }
            yield out


class NoWebhook:
    """Serves nothing: the validating handler stays registered while the webhook is off (kopf
    refuses to run admission handlers without a server, and the handler is registered at import)."""

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield {}  # pragma: no cover - never reached


def build_server(config: OperatorSettings) -> kopf.WebhookServer:
    """The server for ``config``: a Service reference when webhook_host is <svc>.<ns>.svc."""
    host = config.webhook_host or "127.0.0.1"
    certs = Path(tempfile.mkdtemp(prefix="ostinato-webhook-"))
    cert, key = self_signed([host, config.webhook_addr], certs)
    common: dict[str, Any] = {
        "addr": config.webhook_addr,
        "port": config.webhook_port,
        "host": host,
        "certfile": str(cert),
        "pkeyfile": str(key),
    }
    match = _SERVICE_HOST.match(host)
    if match is None:
        return kopf.WebhookServer(**common)
    return _ServiceWebhookServer(service=match["name"], namespace=match["ns"], **common)
