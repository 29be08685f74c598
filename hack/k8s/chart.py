"""The project's Helm chart on a cluster, installed and removed as a user does: shared by the
end-to-end tests (tests/e2e) and the soak (soak/cluster.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["CHART", "CRD", "Tools", "install", "uninstall"]

CHART = Path(__file__).resolve().parents[2] / "helm" / "ostinato"
CRD = "workflows.ostinato.dev"


class Tools(Protocol):
    """kubectl and helm against one cluster (hack.k8s.cluster.Cluster, tests/e2e's Kube)."""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]: ...


def install(
    tools: Tools,
    release: str,
    namespace: str,
    *,
    image: str,
    watch: Sequence[str],
    values: Mapping[str, str] | None = None,
    wait_seconds: int = 240,
) -> subprocess.CompletedProcess[str]:
    """`helm install --wait` of the chart into ``namespace`` (created), the operator running
    ``image`` (`repository:tag`, pulled only when absent) and watching ``watch``; ``values``
    are more `--set`s. Helm installs the chart's CRD only where none exists, so a cluster's
    older CRD is brought up to date first, as `helm upgrade` users must. The install's output
    (its NOTES) is returned."""
    if tools.kubectl("get", "crd", CRD, check=False).returncode == 0:
        tools.kubectl("apply", "-f", str(CHART / "crds"))
    repository, _, tag = image.rpartition(":")
    sets = {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "IfNotPresent",
        "watch.namespaces": "{" + ",".join(watch) + "}",
        **(values or {}),
    }
    args = [f"--set={key}={value}" for key, value in sets.items()]
    return tools.helm(
        "install", release, str(CHART), "--namespace", namespace, "--create-namespace",
        *args, "--wait", "--timeout", f"{wait_seconds}s",
    )  # fmt: skip


def uninstall(tools: Tools, release: str, namespace: str, watched: Sequence[str]) -> None:
    """Remove what install() made: the watched namespaces' Workflows first, while their operator
    still runs (and can drop any finalizer), then the release, then the namespaces."""
    for ns in watched:
        tools.kubectl(
            "delete", "workflows", "--all", "-n", ns, "--wait=true", "--timeout=90s",
            "--ignore-not-found", check=False,
        )  # fmt: skip
    tools.helm("uninstall", release, "-n", namespace, "--wait", check=False)
    for ns in (*watched, namespace):
        tools.kubectl(
            "delete", "namespace", ns, "--wait=true", "--timeout=100s", "--ignore-not-found",
            check=False,
        )  # fmt: skip
