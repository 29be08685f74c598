"""kubectl and helm against the cluster under test, plus polling with a deadline, for tests/e2e."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class CommandError(AssertionError):
    """kubectl or helm exited non-zero; the message has the command and its stderr."""


def poll(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    every: float = 1.0,
    show: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something other than None; on timeout fail naming `what`
    and, when given, what `show` says about the state at that moment."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            seen = f"; now: {show()}" if show is not None else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s{seen}")
        time.sleep(every)


def fetch(url: str) -> bytes | None:
    """The body of a GET of ``url``, or None while nothing answers there (for poll)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
            return body
    except OSError:
        return None


def workflow_status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The Workflow's .status ({} before the operator writes one); fails if it is gone."""
    workflow = kube.get("workflow", name, "-n", namespace)
    assert workflow is not None, f"workflow {namespace}/{name} is gone"
    status: dict[str, Any] = workflow.get("status") or {}
    return status


def loop_summary(status: dict[str, Any], loop: str) -> dict[str, Any]:
    """One loop's entry of .status.loops ({} when the status does not list it yet)."""
    for entry in status.get("loops", []):
        if entry["name"] == loop:
            return dict(entry)
    return {}


def loop_iterations(status: dict[str, Any], loop: str) -> int:
    return int(loop_summary(status, loop).get("iterations") or 0)


@dataclass(frozen=True)
class Kube:
    """One cluster: its kubeconfig, the kubectl and helm binaries, and how to reach a pod."""

    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path
    helm_home: Path
    #: True on the project's single-node cluster: this host routes to pod IPs (10.244.0.0/16).
    #: False on kind, whose pod network is inside Docker: pods are reached through the API
    #: server's proxy instead.
    pod_network_routable: bool

    def _run(
        self, argv: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(
                f"`{' '.join(argv[3:])}` exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args]
        return self._run(argv, input, check, timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.helm_bin), "--kubeconfig", str(self.kubeconfig), *args]
        return self._run(argv, None, check, timeout)

    def get(self, *args: str) -> Any:
        """`kubectl get ... -o json`, parsed; None when the object does not exist."""
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise CommandError(f"`kubectl get {' '.join(args)}`: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def pod_http_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET a pod's HTTP endpoint: on its pod IP where this host is on the pod network,
        through the API server's pod proxy otherwise."""
        if not self.pod_network_routable:
            raw = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"
            return self.kubectl("get", "--raw", raw).stdout
        ip = self.get("pod", pod, "-n", namespace)["status"]["podIP"]
        with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=5) as answer:
            body: bytes = answer.read()
        return body.decode()

    def service_http_get(self, namespace: str, service: str, port_name: str, path: str) -> str:
        """GET through a Service: to its first ready endpoint's address where this host is on
        the pod network (so the Service's selector and targetPort are what is tested), through
        the API server's service proxy otherwise."""
        if not self.pod_network_routable:
            raw = f"/api/v1/namespaces/{namespace}/services/{service}:{port_name}/proxy{path}"
            return self.kubectl("get", "--raw", raw).stdout
        endpoints = self.get("endpoints", service, "-n", namespace) or {}
        for subset in endpoints.get("subsets") or []:
            ports = {p.get("name"): p["port"] for p in subset.get("ports", [])}
            for address in subset.get("addresses") or []:
                if port_name in ports:
                    url = f"http://{address['ip']}:{ports[port_name]}{path}"
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        body: bytes = answer.read()
                    return body.decode()
        raise CommandError(f"service {namespace}/{service} has no ready endpoint for {port_name}")
