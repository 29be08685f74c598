"""The host-path provisioner's decisions: one volume per claim of its class, removed with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hack.k8s.volumes import CLASS_NAME, PROVISIONER, plan_round

ROOT = Path("/var/lib/ostinato-cluster/volumes")


def _claim(name: str, uid: str, cls: str | None = CLASS_NAME, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns1", "name": name, "uid": uid},
        "spec": {
            "storageClassName": cls,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            **spec,
        },
    }


def _volume(name: str, phase: str, ours: bool = True) -> dict[str, Any]:
    annotations = {"pv.kubernetes.io/provisioned-by": PROVISIONER} if ours else {}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"hostPath": {"path": str(ROOT / name)}},
        "status": {"phase": phase},
    }


def test_a_claim_of_the_class_gets_a_volume_bound_to_it() -> None:
    create, delete = plan_round([_claim("hub-state", "u1")], [], ROOT)
    assert delete == []
    [(volume, directory)] = create
    assert directory == ROOT / "ns1-hub-state-u1"
    assert volume["metadata"]["name"] == "pvc-u1"
    assert volume["spec"]["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns1",
        "name": "hub-state",
        "uid": "u1",
    }
    assert volume["spec"]["capacity"] == {"storage": "1Gi"}
    assert volume["spec"]["storageClassName"] == CLASS_NAME
    assert volume["spec"]["hostPath"]["path"] == str(directory)
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"


def test_claims_it_must_leave_alone() -> None:
    claims = [
        _claim("other-class", "u2", cls="fast-ssd"),
        _claim("static", "u3", cls=""),
        _claim("bound", "u4", volumeName="pvc-u4"),
        _claim("made-last-round", "u5"),
    ]
    create, delete = plan_round(claims, [_volume("pvc-u5", "Available")], ROOT)
    assert create == []
    assert delete == []


def test_a_released_volume_of_ours_is_deleted_with_its_directory() -> None:
    volumes = [
        _volume("pvc-gone", "Released"),
        _volume("pvc-inuse", "Bound"),
        _volume("someone-elses", "Released", ours=False),
    ]
    create, delete = plan_round([], volumes, ROOT)
    assert create == []
    assert delete == [("pvc-gone", ROOT / "pvc-gone")]
