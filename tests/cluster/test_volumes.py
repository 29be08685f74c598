"""The single-node cluster's default StorageClass: a claim is bound, a pod of the project's image
(uid 10001) writes to it, and deleting the claim removes the volume and its directory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hack.k8s.cluster import Cluster
from hack.k8s.images import IMAGE_REF
from hack.k8s.volumes import CLASS_NAME

pytestmark = pytest.mark.timeout(400)


def _get(cluster: Cluster, *what: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", *what, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _until(probe: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def test_a_claim_without_a_class_gets_a_writable_volume(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    classes = _get(cluster, "storageclass")
    assert classes is not None
    default = [
        c["metadata"]["name"]
        for c in classes["items"]
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert default == [CLASS_NAME]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "state", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(claim))
    bound = _until(
        lambda: (
            (c := _get(cluster, "pvc", "state", "-n", ns))
            and c["status"].get("phase") == "Bound"
            and c
        ),
        "the claim Bound",
    )
    assert bound["spec"]["storageClassName"] == CLASS_NAME
    volume = _get(cluster, "pv", bound["spec"]["volumeName"])
    assert volume is not None
    directory = Path(volume["spec"]["hostPath"]["path"])
    writer = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "writer", "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
            "containers": [
                {
                    "name": "w",
                    "image": IMAGE_REF,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "open('/state/x', 'w').write('kept')"],
                    "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                }
            ],
            "volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": "state"}}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(writer))
    phase = _until(
        lambda: (
            (p := _get(cluster, "pod", "writer", "-n", ns))
            and p.get("status", {}).get("phase") in ("Succeeded", "Failed")
            and p["status"]["phase"]
        ),
        "the writer pod ended",
    )
    assert phase == "Succeeded", cluster.kubectl("logs", "writer", "-n", ns, check=False).stdout
    assert (directory / "x").read_text() == "kept"
    cluster.kubectl("delete", "pod", "writer", "-n", ns, "--wait=true", "--timeout=60s")
    cluster.kubectl("delete", "pvc", "state", "-n", ns, "--wait=true", "--timeout=60s")
    _until(
        lambda: _get(cluster, "pv", volume["metadata"]["name"]) is None and not directory.exists(),
        "the volume and its directory removed",
    )
