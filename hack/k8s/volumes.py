"""Dynamic volumes for the single-node cluster: a host-path provisioner behind its default class.

A durable Workflow's hub asks for a PersistentVolumeClaim of the cluster's default StorageClass;
without one it stays Pending. This loop plays the external provisioner of that class: every
round it makes a directory and a PersistentVolume bound to each new claim of the class, and
removes both once the claim is gone (reclaim policy Delete). The directories live under the
cluster's state directory, so the cluster's teardown removes them with everything else.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

from hack.k8s._api import Api

__all__ = ["CLASS_NAME", "PROVISIONER", "plan_round", "storage_class"]

CLASS_NAME = "ostinato-local"
PROVISIONER = "ostinato.dev/host-path"


def storage_class() -> dict[str, Any]:
    """The cluster's default StorageClass, served by this loop."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def _volume_name(claim: dict[str, Any]) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def _volume(claim: dict[str, Any], directory: Path) -> dict[str, Any]:
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": _volume_name(claim),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS_NAME,
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
        },
    }


def plan_round(
    claims: list[dict[str, Any]], volumes: list[dict[str, Any]], root: Path
) -> tuple[list[tuple[dict[str, Any], Path]], list[tuple[str, Path]]]:
    """What one round does: (PersistentVolume to create, its directory) for every claim of our
    class that has none, and (PersistentVolume to delete, its directory) for every one of ours
    whose claim is gone (Released). Objects are API JSON."""
    ours = {
        v["metadata"]["name"]: v
        for v in volumes
        if (v["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
        == PROVISIONER
    }
    create: list[tuple[dict[str, Any], Path]] = []
    for claim in claims:
        spec, meta = claim.get("spec", {}), claim["metadata"]
        if spec.get("storageClassName") != CLASS_NAME or spec.get("volumeName"):
            continue
        if meta.get("deletionTimestamp") or _volume_name(claim) in ours:
            continue
        directory = root / f"{meta['namespace']}-{meta['name']}-{meta['uid']}"
        create.append((_volume(claim, directory), directory))
    delete = [
        (name, Path(v["spec"]["hostPath"]["path"]))
        for name, v in ours.items()
        if (v.get("status") or {}).get("phase") in ("Released", "Failed")
    ]
    return create, delete


def _round(api: Api, root: Path) -> None:
    claims = api.items("/api/v1/persistentvolumeclaims")
    volumes = api.items("/api/v1/persistentvolumes")
    create, delete = plan_round(claims, volumes, root)
    for volume, directory in create:
        # Writable by any user: pods run as their image's user (the ostinato image: 10001),
        # and a hostPath volume gets no fsGroup.
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)
        try:
            api.call("POST", "/api/v1/persistentvolumes", volume)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # made in an earlier round whose answer we missed
                raise
        ref = volume["spec"]["claimRef"]
        print(f"provisioned {volume['metadata']['name']} for {ref['namespace']}/{ref['name']}")
    for name, directory in delete:
        shutil.rmtree(directory, ignore_errors=True)
        try:
            api.call("DELETE", f"/api/v1/persistentvolumes/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        print(f"deleted {name} and {directory}")


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    api = Api(args.kubeconfig)
    args.root.mkdir(parents=True, exist_ok=True)
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            _round(api, args.root)
            failures = 0
        except (OSError, ValueError, KeyError) as exc:  # the apiserver restarting: retry
            failures += 1
            if failures == 1 or failures % 30 == 0:
                print(f"round failed ({failures}x): {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        stop.wait(max(0.0, args.interval - (time.monotonic() - started)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.k8s.volumes", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="where volumes' directories go")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
