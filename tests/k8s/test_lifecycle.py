"""The control plane starts, stops by PID, and is cleaned up after a crash or a Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hack.k8s._util import is_alive, stale_pids, stop_pids, wait_until
from hack.k8s.controlplane import PID_FILE, ControlPlane, cleanup_stale

# Each starts a control plane of its own (a few seconds idle, tens on a loaded machine).
pytestmark = [pytest.mark.usefixtures("k8s_binaries"), pytest.mark.slow]


def _pids(workdir: Path) -> list[int]:
    pids = stale_pids(workdir / PID_FILE)  # we are not the owner: None while the owner lives
    return pids or []


@pytest.mark.timeout(120)
def test_stop_ends_every_process_and_removes_the_workdir(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    # A second control plane in the same process as the session one: starting and stopping
    # it must leave the session one alone (its owner, this process, is alive).
    session_pids = [proc.pid for proc in control_plane.processes.values()]
    workdir = tmp_path / "plane"
    plane = ControlPlane(workdir, with_scheduler=True)
    plane.start()
    try:
        pids = {name: proc.pid for name, proc in plane.processes.items()}
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        assert all(is_alive(pid) for pid in pids.values())
        assert plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    finally:
        plane.stop()
    assert not any(is_alive(pid) for pid in pids.values())
    assert not workdir.exists()
    plane.stop()  # idempotent
    assert all(is_alive(pid) for pid in session_pids)
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def _start_cli(workdir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hack.k8s", "control-plane", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("control plane ready"):
            return proc
    proc.wait()
    pytest.fail(f"control-plane command exited {proc.returncode} before it was ready")


def _child_pids(workdir: Path, owner: int) -> list[int]:
    record = json.loads((workdir / PID_FILE).read_text())
    assert record["owner"] == owner
    return [int(entry["pid"]) for entry in record["processes"]]


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_foreground_command(tmp_path: Path) -> None:
    workdir = tmp_path / "plane"
    proc = _start_cli(workdir)
    pids = _child_pids(workdir, proc.pid)
    assert len(pids) == 3
    assert all(is_alive(pid) for pid in pids)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert not any(is_alive(pid) for pid in pids)
    assert not workdir.exists()


@pytest.mark.timeout(120)
def test_a_crashed_owner_is_cleaned_up_by_the_next_run(tmp_path: Path) -> None:
    workdir = tmp_path / "plane"
    proc = _start_cli(workdir)
    pids = _child_pids(workdir, proc.pid)
    assert _pids(workdir) == []  # owner alive: nothing is stale yet
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # The daemons outlive their owner (own sessions) until someone cleans up.
    assert all(is_alive(pid) for pid in pids)
    assert sorted(_pids(workdir)) == sorted(pids)
    assert cleanup_stale() >= len(pids)
    wait_until(
        lambda: True if not any(is_alive(pid) for pid in pids) else None,
        timeout=15,
        what="stale control-plane processes to stop",
    )


DETACHED = """
import json, sys
from pathlib import Path
from hack.k8s.controlplane import ControlPlane
plane = ControlPlane(Path(sys.argv[1]), keep_workdir=True, with_controller_manager=False)
plane.start()
plane.detach()
print(json.dumps([proc.pid for proc in plane.processes.values()]))
"""


@pytest.mark.timeout(120)
def test_a_detached_control_plane_outlives_its_process(tmp_path: Path) -> None:
    workdir = tmp_path / "plane"
    result = subprocess.run(
        [sys.executable, "-c", DETACHED, str(workdir)],
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    pids = json.loads(result.stdout)
    try:
        assert len(pids) == 2  # etcd and kube-apiserver: no controller-manager asked for
        assert all(is_alive(pid) for pid in pids)  # no atexit stop when its owner exited
        cleanup_stale()  # not registered as a crash: left alone
        assert all(is_alive(pid) for pid in pids)
    finally:
        stop_pids(pids, grace=10)
    assert not any(is_alive(pid) for pid in pids)
