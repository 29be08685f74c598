"""Teardown from the state file alone, after a crash: nothing of the cluster is left behind.

It needs a machine without a cluster, so it runs before the session's `cluster` fixture brings
one up (this file sorts first) and skips when one is running (`make cluster-up`, or another
session): that one's teardown is checked by the fixture's finalizer and `make cluster-down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from hack.k8s import binaries, debian, node
from hack.k8s._lock import LockBusyError
from hack.k8s.cluster import Cluster, locked, residue, why_unavailable
from hack.k8s.images import PAUSE_REF

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper", "namespace": "default"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "pause", "image": PAUSE_REF, "imagePullPolicy": "Never"}],
    },
}


@pytest.mark.timeout(900)
def test_teardown_after_a_crash_leaves_the_machine_as_found() -> None:
    why = why_unavailable()
    if why is not None:
        pytest.skip(why)
    try:
        binaries.ensure(binaries.ALL, build=False)
    except binaries.Unavailable as exc:
        pytest.skip(str(exc))
    if Cluster().exists():
        pytest.skip("a cluster is running here; this test would stop it")
    # This test may be the first to need the node's programs (iptables for residue()).
    debian.ensure_packages(debian.NODE_PACKAGES)
    try:
        lock = locked(timeout=0)
        lock.__enter__()
    except LockBusyError as exc:
        pytest.skip(f"another process holds the cluster lock: {exc}")
    # From here the lock is released on every exit, even when a teardown below fails.
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        stack.callback(Cluster().down)
        _crash_and_tear_down()


def _crash_and_tear_down() -> None:
    sysctls_before = node.read_sysctls()
    assert residue(Cluster().node) == []
    cluster = Cluster()
    assert cluster.up(reuse=False)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(POD))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s")
    # A running pod: a netns, veth on the bridge, mounts, a shim, kubepods cgroups.
    assert node.list_cni_netns()
    assert node.shim_pids(cluster.node)

    # The crash: every daemon dies at once and the handle is forgotten.
    for pid in cluster._running().values():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while cluster._running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster._running() == {}
    del cluster

    # The next run knows only the state file on disk.
    removed = Cluster().down()
    assert any(item.startswith("netns cni-") for item in removed), removed
    assert any(item.startswith("shim ") for item in removed), removed
    assert residue(Cluster().node) == []
    assert node.read_sysctls() == sysctls_before
    assert not Cluster().exists()
    # And again: nothing to do, nothing found.
    assert Cluster().down() == []
