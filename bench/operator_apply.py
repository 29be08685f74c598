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


def _rss_now_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc status")


def _replicas_doc(pods: int) -> str:
    """One Workflow with ``pods`` loop pods: the writer and ``pods - 1`` reader replicas."""
    doc = _docs(1)[0]
    doc["metadata"]["name"] = "wide"
    doc["spec"]["loops"][1]["replicas"] = pods - 1
    return yaml.safe_dump(doc)


def by_operator_wide(plane: ControlPlane, kube: Kube, pods: int, ns: str) -> float:
    """One Workflow with ``pods`` loop pods (the limit of maxPodsPerWorkflow's range)."""
    _namespace(plane, ns)
    start = time.perf_counter()
    plane.kubectl("apply", "-n", ns, "-f", "-", input=_replicas_doc(pods))
    wait_until(
        lambda: True if _count(kube, ns) == (pods, 1) else None,
        timeout=900,
        what=f"the {pods} loop pods of one workflow",
        interval=0.2,
    )
    return time.perf_counter() - start


def direct_wide(plane: ControlPlane, kube: Kube, pods: int, ns: str) -> float:
    """The peer of the wide case: its loop pods created by one client, no operator."""
    _namespace(plane, ns)
    settings = OperatorSettings(max_pods_per_workflow=1000)
    doc = yaml.safe_load(_replicas_doc(pods))
    start = time.perf_counter()
    plane.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    doc["metadata"].update(namespace=ns, uid="00000000-0000-0000-0000-000000000000")
    wf = Workflow.model_validate(doc)
    owner = Owner("wide", ns, doc["metadata"]["uid"])
    for pod in loop_pods(owner, wf, settings).values():
        kube.create(pod)
    return time.perf_counter() - start


class Case:
    """One row: a fresh control plane and operator, N Workflows (or one with R replicas)."""

    def __init__(self, workflows: int, replicas: int | None = None) -> None:
        self.workflows = workflows
        self.replicas = replicas

    @property
    def label(self) -> str:
        if self.replicas is None:
            return f"{self.workflows} workflow(s)"
        return f"1 workflow, {self.replicas} loop pods"

    @property
    def pods(self) -> int:
        return 2 * self.workflows if self.replicas is None else self.replicas


def run_case(case: Case, work: Path, settle_seconds: float, log: Path | None) -> dict[str, Any]:
    with ControlPlane(work / "plane") as plane:
        plane.kubectl("apply", "-f", str(ROOT / "crds" / "workflows.ostinato.dev.yaml"))
        plane.kubectl(
            "wait", "--for=condition=Established", "crd/workflows.ostinato.dev", "--timeout=30s"
        )
        webhook = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(plane.kubeconfig),
            "OSTINATO_HUB_TIMEOUT_SECONDS": "0.2",
            # As in a pod: the admission webhook served (here on loopback, where the API server
            # reaches it) and registered, so its memory is part of the figure.
            "OSTINATO_WEBHOOK_ADDR": "127.0.0.1",
            "OSTINATO_WEBHOOK_HOST": "127.0.0.1",
            "OSTINATO_WEBHOOK_PORT": str(webhook),
        }
        liveness = free_port()
        argv = [
            sys.executable,
            "-m",
            "ostinato_operator",
            "--all-namespaces",
            "--no-leader-elect",
            "--webhook",
            "--max-pods-per-workflow",
            "1000",
            "--metrics-port",
            str(free_port()),
            "--liveness-port",
            str(liveness),
        ]
        proc = start_process(argv, log or work / "operator.log", env)
        kube = Kube(plane.api_client())
        try:
            # Measure a running operator: its start (imports, login, first listing, webhook
            # registration) is not part of the time from apply to children.
            wait_until(
                lambda: _ready(f"http://127.0.0.1:{liveness}/healthz"),
                timeout=60,
                what="the operator's liveness endpoint",
            )
            wait_until(
                lambda: (
                    True
                    if plane.kubectl(
                        "get",
                        "validatingwebhookconfiguration",
                        "validate.ostinato.dev",
                        check=False,
                    ).returncode
                    == 0
                    else None
                ),
                timeout=60,
                what="the webhook's registration",
            )
            idle = _rss_now_mib(proc.pid)
            print(f"{case.label}: operator", file=sys.stderr, flush=True)
            if case.replicas is None:
                op_s = by_operator(plane, kube, case.workflows, "op")
            else:
                op_s = by_operator_wide(plane, kube, case.replicas, "op")
            # The operator keeps working once the children exist (status rounds, pod events):
            # the figure is the resident set it settles at, and the peak on the way.
            time.sleep(settle_seconds)
            settled, peak = _rss_now_mib(proc.pid), _rss_peak_mib(proc.pid)
            assert proc.poll() is None, f"the operator exited ({proc.returncode})"
            print(f"{case.label}: direct", file=sys.stderr, flush=True)
            if case.replicas is None:
                peer_s = direct(plane, kube, case.workflows, "direct")
            else:
                peer_s = direct_wide(plane, kube, case.replicas, "direct")
        finally:
            stop_pids([proc.pid], grace=10)
            kube.close()
    return {
        "case": case.label,
        "workflows": case.workflows,
        "replicas": case.replicas,
        "loop_pods": case.pods,
        "operator_seconds": round(op_s, 3),
        "direct_seconds": round(peer_s, 3),
        "ratio": round(op_s / peer_s, 2),
        "operator_idle_rss_mib": round(idle, 1),
        "operator_rss_mib": round(settled, 1),
        "operator_peak_rss_mib": round(peak, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="*",
        default=[1000],
        help="also one Workflow with this many loop pods (1000: maxPodsPerWorkflow's highest); "
        "none: skip",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=15.0,
        help="seconds the operator runs on after the children exist, before its memory is read",
    )
    parser.add_argument("--log", type=Path, help="keep the operator's log in this file")
    args = parser.parse_args()
    try:
        binaries.ensure(binaries.CONTROL_PLANE)
    except binaries.Unavailable as exc:
        print(f"bench/operator_apply.py: cannot start a control plane: {exc}", file=sys.stderr)
        return 1
    cases = [Case(n) for n in args.sizes] + [Case(1, r) for r in args.replicas]
    results: list[dict[str, Any]] = []
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="ostinato-bench-op-") as tmp:
            results.append(run_case(case, Path(tmp), args.settle_seconds, args.log))
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return 0
    head = ("CASE", "LOOP PODS", "OPERATOR S", "DIRECT S", "RATIO", "RSS IDLE", "RSS", "PEAK")
    rows = [head] + [
        (
            r["case"],
            str(r["loop_pods"]),
            f"{r['operator_seconds']:.2f}",
            f"{r['direct_seconds']:.2f}",
            f"{r['ratio']:.1f}x",
            f"{r['operator_idle_rss_mib']:.0f} MiB",
            f"{r['operator_rss_mib']:.0f} MiB",
            f"{r['operator_peak_rss_mib']:.0f} MiB",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
