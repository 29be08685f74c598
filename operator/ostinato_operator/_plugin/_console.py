"""`console WORKFLOW`: a port-forward to the hub's HTTP port, and the console's URL to open."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ._connect import Target
from ._errors import PluginError
from ._workflows import api_message, get_workflow

__all__ = ["CONSOLE_PATH", "HUB_HTTP_PORT", "console"]

#: The hub Service's `http` port (/status, /metrics, the console).
HUB_HTTP_PORT = 8080
#: Where the hub serves its web console (docs/console.md).
CONSOLE_PATH = "/console/"
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> ")


def _hub_service(target: Target, workflow: str) -> str:
    name = f"{workflow}-hub"
    core: Any = kubernetes.client.CoreV1Api(target.api)
    try:
        core.read_namespaced_service(name, target.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise PluginError(
                f"workflow {workflow!r} has no hub Service {name} yet (is the operator running?)"
            ) from None
        raise PluginError(f"service {name}: {api_message(exc)}") from None
    return name


def console(
    target: Target,
    workflow: str,
    local_port: int,
    kubeconfig: str | None,
    context: str | None,
) -> int:
    """Run `kubectl port-forward svc/<wf>-hub` until it ends (Ctrl-C), printing the URL."""
    get_workflow(target, workflow)  # a missing Workflow, named
    service = _hub_service(target, workflow)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise PluginError("console needs kubectl on the PATH (for its port-forward)")
    argv = [kubectl, "port-forward", "-n", target.namespace, f"svc/{service}"]
    argv.append(f"{local_port or ''}:{HUB_HTTP_PORT}")
    argv += ["--address", "127.0.0.1"]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if context:
        argv += ["--context", context]
    forward = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert forward.stdout is not None
    assert forward.stderr is not None
    shown = False
    try:
        # Read to the end: kubectl says "Handling connection" on stdout for every connection,
        # and would block on a full pipe.
        for line in forward.stdout:
            match = _FORWARDING.search(line)
            if match is not None and not shown:
                url = f"http://127.0.0.1:{match.group(1)}{CONSOLE_PATH}"
                print(f"{url}  (Ctrl-C to stop)", flush=True)
                shown = True
        code = forward.wait()
    except KeyboardInterrupt:
        forward.terminate()
        forward.wait()
        return 0
    if code != 0:
        raise PluginError(
            f"port-forward to svc/{service}: {' '.join(forward.stderr.read().split())}"
        )
    return 0
