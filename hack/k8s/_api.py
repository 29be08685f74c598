"""The apiserver for the cluster's own small loops (DNS, volumes): urllib with the kubeconfig's
token, so a process that lives as long as the cluster does not carry the kubernetes client."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Api"]


class Api:
    """Requests to the kubeconfig's server with its bearer token (TLS not verified, as the
    kubeconfig says: insecure-skip-tls-verify)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        self.server = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer; urllib.error.HTTPError for a status the caller must judge."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
            return json.load(response)

    def items(self, path: str) -> list[Any]:
        """The items of a GET of a list."""
        items: list[Any] = self.call("GET", path)["items"]
        return items
