"""The operator: time from `kubectl apply` to all children created, for 1 and for 100 Workflows,
and the operator's memory (bench/README.md, last benchmark).

A real control plane (hack.k8s.ControlPlane: etcd, kube-apiserver, kube-controller-manager; no
kubelet, so pods are objects that never run) and the operator as a real process
(`python -m ostinato_operator`, admin credentials, no webhook, no Lease). One `kubectl apply` of
N copies of examples/k8s-counter.yaml (each: ConfigMap, Secret, PVC, hub Deployment and Service,
2 loop pods) into a fresh namespace; the clock stops when every loop pod and every hub Deployment
exists (listed with the admin client every 50 ms). Peer, in the same run: the very same child
manifests (from the operator's own builders) created directly with one client, sequentially, in
another namespace: the API server's own cost for those objects. The ratio says what the operator
adds on top (watch latency, kopf's handling, its patches of annotations and status).
Memory: the operator process's peak resident set (VmHWM) after each case.

    .venv/bin/python bench/operator_apply.py            # table
    .venv/bin/python bench/operator_apply.py --json     # machine-readable
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import copy
import json
import os
import tempfile
import time
import urllib.request
from typing import Any

import yaml

from bench._harness import machine
from hack.k8s import binaries
from hack.k8s._util import free_port, start_process, stop_pids, wait_until
from hack.k8s.controlplane import ControlPlane
from ostinato import Workflow
from ostinato_operator._children import (
    Owner,
    config_map,
    hub_deployment,
    hub_pvc,
    hub_service,
    loop_pods,
    secret,
)
from ostinato_operator._keys import new_secret_data
from ostinato_operator._kube import Kube
from ostinato_operator._settings import OperatorSettings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "k8s-counter.yaml"


def _docs(n: int) -> list[dict[str, Any]]:
    base = yaml.safe_load(EXAMPLE.read_text())
    out = []
    for i in range(n):
        doc = copy.deepcopy(base)
        doc["metadata"]["name"] = f"wf{i}"
        out.append(doc)
    return out


def _rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def _ready(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return None


def _count(kube: Kube, ns: str) -> tuple[int, int]:
    pods = kube.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=loop")
    deps = kube.apps.list_namespaced_deployment(ns)
    return len(pods.items), len(deps.items)


def _namespace(plane: ControlPlane, name: str) -> None:
    plane.kubectl("create", "namespace", name)
    wait_until(
        lambda: (
            True
            if plane.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
            else None
        ),
        timeout=30,
        what=f"the default ServiceAccount of {name}",
    )


def by_operator(plane: ControlPlane, kube: Kube, n: int, ns: str) -> float:
    _namespace(plane, ns)
    text = yaml.safe_dump_all(_docs(n))
    start = time.perf_counter()
    plane.kubectl("apply", "-n", ns, "-f", "-", input=text)
    wait_until(
        lambda: True if _count(kube, ns) == (2 * n, n) else None,
        timeout=600,
        what=f"children of {n} workflow(s)",
        interval=0.05,
    )
    return time.perf_counter() - start


def direct(plane: ControlPlane, kube: Kube, n: int, ns: str) -> float:
    """The peer: the same children created by one client, no operator; same owner object."""
    _namespace(plane, ns)
    settings = OperatorSettings()
    owner_doc = _docs(1)[0]
    owner_doc["metadata"]["name"] = "owner"
    plane.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(owner_doc))
    uid = json.loads(plane.kubectl("get", "workflow", "owner", "-n", ns, "-o", "json").stdout)[
        "metadata"
    ]["uid"]
    # The operator would act on "owner" too: wait until it has, then count only what we add.
    wait_until(
        lambda: True if _count(kube, ns) == (2, 1) else None, timeout=60, what="owner's children"
    )
    docs = _docs(n)
    start = time.perf_counter()
    # The user's `kubectl apply` costs the same in both cases: a server-side dry run of the same
    # documents stands for it here (validated and admitted, not stored, so no operator reacts).
    plane.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    for doc in docs:
        doc["metadata"].update(namespace=ns, uid=uid)
        wf = Workflow.model_validate(doc)
        owner = Owner(doc["metadata"]["name"], ns, uid)
        kube.apply(config_map(owner, wf))
        kube.create(secret(owner, new_secret_data()))
        pvc = hub_pvc(owner, wf, settings)
        if pvc is not None:
            kube.create(pvc)
        kube.apply(hub_deployment(owner, wf, settings))
        kube.apply(hub_service(owner))
        for pod in loop_pods(owner, wf, settings).values():
            kube.create(pod)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--log", type=Path, help="keep the operator's log in this file")
    args = parser.parse_args()
    try:
        binaries.ensure(binaries.CONTROL_PLANE)
    except binaries.Unavailable as exc:
        print(f"bench/operator_apply.py: cannot start a control plane: {exc}", file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ostinato-bench-op-") as tmp:
        work = Path(tmp)
        with ControlPlane(work / "plane") as plane:
            plane.kubectl("apply", "-f", str(ROOT / "crds" / "workflows.ostinato.dev.yaml"))
            plane.kubectl(
                "wait", "--for=condition=Established", "crd/workflows.ostinato.dev", "--timeout=30s"
            )
            env = {
                **os.environ,
                "KUBECONFIG": str(plane.kubeconfig),
                "OSTINATO_HUB_TIMEOUT_SECONDS": "0.2",
            }
            liveness = free_port()
            argv = [
                sys.executable,
                "-m",
                "ostinato_operator",
                "--all-namespaces",
                "--no-leader-elect",
                "--no-webhook",
                "--metrics-port",
                "0",
                "--liveness-port",
                str(liveness),
            ]
            log = args.log or work / "operator.log"
            proc = start_process(argv, log, env)
            kube = Kube(plane.api_client())
            # Measure a running operator: its start (imports, login, first listing) is not
            # part of the time from apply to children.
            wait_until(
                lambda: _ready(f"http://127.0.0.1:{liveness}/healthz"),
                timeout=60,
                what="the operator's liveness endpoint",
            )
            try:
                idle = None
                for n in args.sizes:
                    print(f"{n} workflow(s): operator", file=sys.stderr, flush=True)
                    op_s = by_operator(plane, kube, n, f"op-{n}")
                    rss = _rss_peak_mib(proc.pid)
                    idle = idle or rss
                    print(f"{n} workflow(s): direct", file=sys.stderr, flush=True)
                    peer_s = direct(plane, kube, n, f"direct-{n}")
                    results.append(
                        {
                            "workflows": n,
                            "children": 7 * n,
                            "operator_seconds": round(op_s, 3),
                            "direct_seconds": round(peer_s, 3),
                            "ratio": round(op_s / peer_s, 2),
                            "operator_peak_rss_mib": round(rss, 1),
                        }
                    )
            finally:
                stop_pids([proc.pid], grace=10)
                kube.close()
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return 0
    head = ("WORKFLOWS", "CHILDREN", "OPERATOR S", "DIRECT S", "RATIO", "OPERATOR PEAK RSS MiB")
    rows = [head] + [
        (
            str(r["workflows"]),
            str(r["children"]),
            f"{r['operator_seconds']:.2f}",
            f"{r['direct_seconds']:.2f}",
            f"{r['ratio']:.1f}x",
            f"{r['operator_peak_rss_mib']:.0f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
