"""A real Prometheus server for the tests: Debian's ``prometheus`` binary on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

#: Where Debian's package installs the server (``make pytest`` installs it when root).
BINARY = "prometheus"
#: How often the server scrapes its target, seconds: its shortest sensible interval.
SCRAPE_SECONDS = 1.0


def binary() -> str | None:
    return shutil.which(BINARY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    """A Prometheus process scraping ``target`` (host:port) every second; :meth:`stop` it."""

    def __init__(self, workdir: Path, target: str) -> None:
        path = binary()
        if path is None:
            raise RuntimeError("prometheus is not installed")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": f"{SCRAPE_SECONDS:g}s"},
                    "scrape_configs": [
                        {
                            "job_name": "ostinato",
                            "scrape_interval": f"{SCRAPE_SECONDS:g}s",
                            "scrape_timeout": f"{SCRAPE_SECONDS:g}s",
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    path,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as reply:
            doc = json.loads(reply.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"{url}: {doc}")
        return doc["data"]

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query: {labels without __name__, job, instance: value}."""
        data = self.api("query", query=promql)
        out = {}
        for item in data["result"]:
            labels = tuple(
                sorted(
                    (k, v)
                    for k, v in item["metric"].items()
                    if k not in ("__name__", "job", "instance")
                )
            )
            out[labels] = float(item["value"][1])
        return out

    def by(self, promql: str, label: str) -> dict[str, float]:
        """An instant query's values keyed by one label's value."""
        return {dict(labels)[label]: v for labels, v in self.query(promql).items()}

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"prometheus did not become ready in {timeout:g}s: {self.log.read_text()[-2000:]}"
        )
