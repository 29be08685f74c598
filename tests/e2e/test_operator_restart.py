"""An operator restart heals in seconds on the real cluster: delete the operator's pod and a loop
pod at once, as a node drain would; the Deployment's new operator pod takes the Lease (released
by the old one on SIGTERM, not left to expire) and recreates the loop pod once that pod's own
graceful stop is over. The figures are printed (pytest -s) for the docs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ._kube import Kube, poll
from .conftest import Install

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "k8s-counter.yaml"
WF, LOOP_POD = "counter", "counter-reader-0"
#: A hang guard, not the goal (15 s, measured and reported): a loaded 2-core node may be slow.
HEAL_GUARD_SECONDS = 180

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def _operator_pods(install: Install) -> list[dict[str, Any]]:
    got = install.kube.get(
        "pods",
        "-n",
        install.operator_namespace,
        "-l",
        f"app.kubernetes.io/instance={install.release},app.kubernetes.io/component=operator",
    )
    return [p for p in got["items"] if not p["metadata"].get("deletionTimestamp")]


def _holder(install: Install) -> str:
    lease = install.kube.get(
        "lease", f"{install.release}-ostinato", "-n", install.operator_namespace
    )
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def _uid(kube: Kube, ns: str, name: str) -> str | None:
    pod = kube.get("pod", name, "-n", ns)
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return None
    return str(pod["metadata"]["uid"])


def test_a_deleted_operator_pod_is_replaced_and_acts_within_seconds(install: Install) -> None:
    kube, ns = install.kube, install.workflow_namespace
    install.apply_ready(EXAMPLE, WF, show=lambda: str(kube.get("workflow", WF, "-n", ns)))
    try:
        (old,) = _operator_pods(install)
        old_name = old["metadata"]["name"]
        assert _holder(install).startswith(old_name), _holder(install)
        loop_uid = _uid(kube, ns, LOOP_POD)
        assert loop_uid is not None

        start = time.monotonic()
        # Both at once, as a node drain would: the loop pod's own graceful stop (its drain)
        # takes some seconds, after which only an operator can bring it back.
        kube.kubectl("delete", "pod", old_name, "-n", install.operator_namespace, "--wait=false")
        kube.kubectl("delete", "pod", LOOP_POD, "-n", ns, "--wait=false")
        new_name = poll(
            lambda: next(
                (
                    p["metadata"]["name"]
                    for p in _operator_pods(install)
                    if p["metadata"]["name"] != old_name
                    and _holder(install).startswith(p["metadata"]["name"])
                ),
                None,
            ),
            timeout=HEAL_GUARD_SECONDS, what="a new operator pod holding the Lease",
            every=0.2, show=install.diagnose,
        )  # fmt: skip
        leased = time.monotonic() - start
        poll(
            lambda: True if kube.get("pod", LOOP_POD, "-n", ns) is None
            or _uid(kube, ns, LOOP_POD) not in (None, loop_uid) else None,
            timeout=HEAL_GUARD_SECONDS, what=f"the old {LOOP_POD} gone",
            every=0.2, show=install.diagnose,
        )  # fmt: skip
        loop_gone = time.monotonic() - start
        poll(
            lambda: True if _uid(kube, ns, LOOP_POD) not in (None, loop_uid) else None,
            timeout=HEAL_GUARD_SECONDS, what=f"{LOOP_POD} recreated",
            every=0.2, show=install.diagnose,
        )  # fmt: skip
        healed = time.monotonic() - start
        # Recreated by the new operator: not before it held the Lease (the old one releases
        # the Lease first, then stops).
        lease = kube.get("lease", f"{install.release}-ostinato", "-n", install.operator_namespace)
        acquired = lease["spec"]["acquireTime"][:19]  # seconds, as creationTimestamp has
        created = kube.get("pod", LOOP_POD, "-n", ns)["metadata"]["creationTimestamp"][:19]
        assert created >= acquired, (created, acquired, new_name)
        print(
            f"\noperator pod deleted -> new operator {new_name} holds the Lease {leased:.1f} s; "
            f"the loop pod deleted at the same moment: gone {loop_gone:.1f} s (its own drain), "
            f"recreated {healed:.1f} s"
        )
    finally:
        kube.kubectl(
            "delete", "workflow", WF, "-n", ns, "--wait=true", "--timeout=120s",
            check=False, timeout=150,
        )  # fmt: skip
