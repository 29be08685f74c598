"""A Deployment of the locally built image on the single-node cluster: pods run, reach each
other through a Service name and a headless Service (cluster DNS), log, and are removed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from hack.k8s.cluster import Cluster
from hack.k8s.images import IMAGE_REF

T = TypeVar("T")

# A tiny HTTP server: answers every GET with its pod's name, logs each request, and stops on
# SIGTERM at once (so deleting the Deployment does not wait out the grace period).
SERVER = """
import http.server, os, signal, socket, sys
name = socket.gethostname()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"request {self.path} from {self.client_address[0]}", flush=True)
    def log_message(self, *args):
        pass
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
print(f"serving {name}", flush=True)
server.serve_forever()
"""

# Run inside a pod: fetch a URL once and print the answer (exit 1 on any error).
FETCH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as response:
    print(response.read().decode())
"""

# Run inside a pod: the addresses a name resolves to, as JSON.
RESOLVE = """
import json, socket, sys
infos = socket.getaddrinfo(sys.argv[1], 8080, socket.AF_INET, socket.SOCK_STREAM)
print(json.dumps(sorted({info[4][0] for info in infos})))
"""


def manifests(namespace: str) -> str:
    labels = {"app": "echo"}
    container = {
        "name": "echo",
        "image": IMAGE_REF,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", SERVER],
        "ports": [{"containerPort": 8080, "name": "http"}],
        # The image must work read-only as non-root with only /tmp writable (COMMON contract).
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    port = {"name": "http", "port": 80, "targetPort": 8080}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": {"selector": labels, "ports": [port]},
    }
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo-headless", "namespace": namespace},
        "spec": {"selector": labels, "clusterIP": "None", "ports": [{**port, "port": 8080}]},
    }
    return json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [deployment, service, headless]}
    )


def poll(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def pods(cluster: Cluster, namespace: str) -> dict[str, str]:
    """name -> pod IP of the echo pods."""
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=echo", "-o", "json").stdout
    return {
        p["metadata"]["name"]: p["status"].get("podIP", "")
        for p in json.loads(out)["items"]
        if p["metadata"].get("deletionTimestamp") is None
    }


def in_pod(cluster: Cluster, namespace: str, pod: str, script: str, *args: str) -> str | None:
    result = cluster.kubectl(
        "exec", "-n", namespace, pod, "--", "python3", "-c", script, *args, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.mark.timeout(900)
def test_image_entrypoint_and_contents(cluster: Cluster, cluster_namespace: str) -> None:
    """The image runs `ostinato` as uid 10001 and carries the operator and the examples."""
    cluster.kubectl("apply", "-f", "-", input=manifests(cluster_namespace))
    cluster.kubectl(
        "rollout", "status", "-n", cluster_namespace, "deployment/echo", "--timeout=300s"
    )
    pod = sorted(pods(cluster, cluster_namespace))[0]
    check = (
        "import os, shutil, demo_nodes, ostinato, ostinato_operator;"
        "print(os.getuid(), bool(shutil.which('ostinato-operator')))"
    )
    assert in_pod(cluster, cluster_namespace, pod, check) == "10001 True"
    helped = cluster.kubectl("exec", "-n", cluster_namespace, pod, "--", "ostinato", "--help")
    assert "usage: ostinato" in helped.stdout


@pytest.mark.timeout(900)
def test_deployment_pods_talk_log_and_go(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    cluster.kubectl("apply", "-f", "-", input=manifests(ns))
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/echo", "--timeout=300s")
    running = poll(
        lambda: found if len(found := pods(cluster, ns)) == 2 and all(found.values()) else None,
        60,
        "two echo pods with IPs",
    )
    names = sorted(running)
    ips = sorted(running.values())

    # Headless Service: the name resolves (cluster DNS) to both pod IPs, from either pod, and
    # each pod answers the other one directly.
    for pod in names:
        resolved = poll(
            lambda pod=pod: (
                answer
                if (answer := in_pod(cluster, ns, pod, RESOLVE, "echo-headless")) == json.dumps(ips)
                else None
            ),
            60,
            f"echo-headless resolving to {ips} in {pod}",
        )
        assert json.loads(resolved) == ips
    for pod in names:
        other = next(n for n in names if n != pod)
        answer = in_pod(cluster, ns, pod, FETCH, f"http://{running[other]}:8080/direct")
        assert answer == other

    # The Service name: its ClusterIP (kube-proxy) spreads requests over both pods, so from
    # the first pod both names come back within a few tries.
    seen: set[str] = set()

    def both_seen() -> bool | None:
        answer = in_pod(cluster, ns, names[0], FETCH, "http://echo/service")
        if answer:
            seen.add(answer)
        return True if seen == set(names) else None

    poll(both_seen, 120, f"both pods answering through Service echo (seen {seen})")
    fqdn = in_pod(cluster, ns, names[1], FETCH, f"http://echo.{ns}.svc.cluster.local/fqdn")
    assert fqdn in names

    # kubectl logs: each pod's own output (through the kubelet and containerd).
    for pod in names:
        logs = cluster.kubectl("logs", "-n", ns, pod).stdout
        assert f"serving {pod}" in logs
        assert "request /direct from " in logs

    cluster.kubectl("delete", "-n", ns, "deployment/echo", "--wait=false")
    poll(
        lambda: (
            True
            if cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""
            else None
        ),
        120,
        "echo pods removed",
    )
    assert cluster.kubectl("get", "replicasets", "-n", ns, "-o", "name").stdout.strip() == ""
