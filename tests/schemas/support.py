"""The Kubernetes releases a manifest must be valid in, and the strict check against each."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

__all__ = ["NOT_KUBERNETES", "OLDEST", "VERSIONS", "check", "release"]

#: The oldest Kubernetes release the project supports (docs/kubernetes.md, "Versions").
OLDEST = (1, 27)

#: Kinds that are not part of Kubernetes itself, so no Kubernetes schema covers them: the
#: ServiceMonitor of the Prometheus Operator (rendered only with serviceMonitor.enabled).
NOT_KUBERNETES = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


#: Every release from OLDEST to the newest whose schemas kubernetes-validate ships.
VERSIONS = sorted({v for v in kv_utils.all_versions() if release(v) >= OLDEST}, key=release)


def check(obj: dict[str, Any], version: str, label: str) -> None:
    """Fail the test, naming the object, the field and the release, unless ``obj`` is valid
    Kubernetes ``version`` (strictly: no field the release does not know)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in NOT_KUBERNETES:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(obj, version, strict=True)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(top)"
        pytest.fail(f"{label} ({key[0]} {key[1]}) is not valid {version}: {path}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"{label}: {key[0]} {key[1]} does not exist in Kubernetes {version}")
