"""Teardown and the residue check on a machine that never had a cluster, nor its programs.

down() also clears what no state file records (pod processes in the kubepods cgroups, kube-proxy's
chains), so these tests need a machine without a cluster: this file sorts before the session's
`cluster` fixture brings one up, and skips when one runs (`make cluster-up`, another session).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hack.k8s import cluster as cluster_module
from hack.k8s.cluster import Cluster, ClusterSettings, residue
from hack.k8s.node import NodeSettings


@pytest.fixture
def no_programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with neither ip, iptables-save, ctr nor kube-proxy on it, on a machine with no
    cluster running."""
    if Cluster().exists() or any(Path("/sys/fs/cgroup").glob("*/kubepods")):
        pytest.skip("a cluster runs on this machine; tearing down would touch its pods")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def settings(tmp_path: Path) -> ClusterSettings:
    node = NodeSettings(state_dir=tmp_path / "state", run_dir=tmp_path / "run", bridge="ostt0")
    return ClusterSettings(node=node)


@pytest.mark.usefixtures("no_programs")
def test_down_and_residue_need_no_programs_when_there_is_nothing(
    settings: ClusterSettings,
) -> None:
    assert Cluster(settings).down() == []
    assert residue(settings.node) == []


@pytest.mark.usefixtures("no_programs")
def test_cluster_down_command_says_there_was_nothing(
    settings: ClusterSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cluster_module, "LOCK_PATH", tmp_path / "cluster.lock")
    monkeypatch.setattr(cluster_module, "Cluster", lambda: Cluster(settings))
    assert cluster_module.down_main(argparse.Namespace()) == 0
    assert capsys.readouterr().out == "no cluster here: nothing to remove\n"
