"""Fixtures for the operator against a real control plane: the chart's CRD and RBAC applied,
and the operator run in-process by kopf.testing.KopfRunner under the chart's ServiceAccount."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.k8s._util import free_port, wait_until
from hack.k8s.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ostinato"
OPERATOR_NS = "ostinato-system"
RELEASE = "ostinato"
#: What the chart's templates render for the objects the operator's identity is made of.
IDENTITY_KINDS = {
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
}


@dataclass
class Installed:
    plane: ControlPlane
    kubeconfig: Path  # the chart ServiceAccount's token
    service_account: str


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> Installed:
    """`helm template` the chart (CRD included) and apply its CRD, ServiceAccount and RBAC."""
    rendered = control_plane.helm(
        "template", RELEASE, str(CHART), "--namespace", OPERATOR_NS, "--include-crds"
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in IDENTITY_KINDS]
    assert {d["kind"] for d in docs} == IDENTITY_KINDS, "the chart lacks part of its identity"
    control_plane.kubectl("apply", "-f", "-", input=_namespace_yaml(OPERATOR_NS))
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/workflows.ostinato.dev"
    )
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    return Installed(
        control_plane, control_plane.kubeconfig_for_service_account(OPERATOR_NS, sa), sa
    )


@pytest.fixture
def namespace(control_plane: ControlPlane, k8s_namespace: str) -> str:
    """A fresh namespace whose "default" ServiceAccount exists (pods need it): the
    controller-manager makes it, but with envtest's assets alone there is none."""
    doc = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": k8s_namespace},
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    return k8s_namespace


def _namespace_yaml(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


@dataclass
class Operator:
    plane: ControlPlane
    liveness: str
    runner: Any

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.plane.kubectl(*args, input=input, check=check)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            body: bytes = resp.read()
            return body
    except OSError:
        return None


def _webhook_ready(plane: ControlPlane, port: int) -> bool | None:
    out = plane.kubectl(
        "get", "validatingwebhookconfiguration", "validate.ostinato.dev", "-o", "json", check=False
    )
    if out.returncode != 0:
        return None
    hooks = json.loads(out.stdout).get("webhooks") or []
    urls = [h.get("clientConfig", {}).get("url", "") for h in hooks]
    return True if any(f"127.0.0.1:{port}/" in u for u in urls) else None


def _no_webhook(plane: ControlPlane) -> bool | None:
    out = plane.kubectl(
        "get", "validatingwebhookconfiguration", "validate.ostinato.dev", "-o", "json", check=False
    )
    return True if out.returncode != 0 or not json.loads(out.stdout).get("webhooks") else None


@contextlib.contextmanager
def run_operator(installed: Installed, webhook: bool = True, **env: str) -> Iterator[Operator]:
    """kopf run with our handlers, as the chart's ServiceAccount, the webhook on loopback
    (or off: then the operator alone stands between a Workflow and its pods)."""
    from kopf.testing import KopfRunner

    webhook_port, liveness_port = free_port(), free_port()
    settings = {
        "KUBECONFIG": str(installed.kubeconfig),
        "OSTINATO_IMAGE": "localhost/ostinato:test",
        "OSTINATO_WEBHOOK": "true" if webhook else "false",
        "OSTINATO_WEBHOOK_ADDR": "127.0.0.1",
        "OSTINATO_WEBHOOK_HOST": "127.0.0.1",
        "OSTINATO_WEBHOOK_PORT": str(webhook_port),
        "OSTINATO_STATUS_INTERVAL_SECONDS": "1",
        "OSTINATO_HUB_TIMEOUT_SECONDS": "0.5",
        **env,
    }
    liveness = f"http://127.0.0.1:{liveness_port}/healthz"
    args = ["run", "--standalone", "--all-namespaces", f"--liveness={liveness}"]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings.items():
            mp.setenv(key, value)
        runner = KopfRunner([*args, "-m", "ostinato_operator._handlers"], timeout=60)
        with runner:
            wait_until(lambda: _get(liveness), timeout=30, what="the operator's liveness")
            if webhook:
                wait_until(
                    lambda: _webhook_ready(installed.plane, webhook_port),
                    timeout=30,
                    what="the operator's admission webhook registration",
                )
            else:
                wait_until(
                    lambda: _no_webhook(installed.plane),
                    timeout=30,
                    what="no admission webhook left registered",
                )
            yield Operator(installed.plane, liveness, runner)
    assert runner.exception is None, runner.output[-3000:]
