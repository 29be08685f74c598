"""The binary cache: an interrupted build never looks complete; envtest assets are honoured."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hack.k8s import binaries


def _fake_output(directory: Path, names: tuple[str, ...] = binaries.BUILT) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_bytes(b"#!/bin/sh\necho " + name.encode() + b"\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.fixture
def no_assets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(binaries.ASSETS_ENV, raising=False)


@pytest.mark.usefixtures("no_assets")
def test_binaries_without_marker_are_not_complete(tmp_path: Path) -> None:
    # An interrupted build: every binary copied, the marker never written.
    _fake_output(binaries.bin_dir(tmp_path))
    assert not binaries.built_complete(tmp_path)
    with pytest.raises(binaries.Unavailable, match="kube-controller-manager"):
        binaries.ensure(["kube-controller-manager"], root=tmp_path, build=False)


@pytest.mark.usefixtures("no_assets")
def test_install_writes_marker_last_and_ensure_uses_it(tmp_path: Path) -> None:
    binaries.install_built(_fake_output(tmp_path / "out"), tmp_path)
    assert binaries.built_complete(tmp_path)
    found = binaries.ensure(["kube-scheduler", "kubelet"], root=tmp_path, build=False)
    assert found == {
        "kube-scheduler": binaries.bin_dir(tmp_path) / "kube-scheduler",
        "kubelet": binaries.bin_dir(tmp_path) / "kubelet",
    }
    record = json.loads((binaries.bin_dir(tmp_path) / binaries.MARKER).read_text())
    assert set(record["sizes"]) == set(binaries.BUILT)


@pytest.mark.usefixtures("no_assets")
def test_truncated_binary_is_not_complete(tmp_path: Path) -> None:
    binaries.install_built(_fake_output(tmp_path / "out"), tmp_path)
    (binaries.bin_dir(tmp_path) / "kubelet").write_bytes(b"")
    assert not binaries.built_complete(tmp_path)


@pytest.mark.usefixtures("no_assets")
def test_failed_install_removes_the_previous_marker(tmp_path: Path) -> None:
    binaries.install_built(_fake_output(tmp_path / "good"), tmp_path)
    partial = _fake_output(tmp_path / "partial", binaries.BUILT[:2])
    with pytest.raises(binaries.BuildError, match="kube-scheduler"):
        binaries.install_built(partial, tmp_path)
    assert not (binaries.bin_dir(tmp_path) / binaries.MARKER).exists()
    assert not binaries.built_complete(tmp_path)


def test_kubebuilder_assets_are_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = _fake_output(tmp_path / "assets", ("etcd", "kube-apiserver", "kubectl"))
    monkeypatch.setenv(binaries.ASSETS_ENV, str(assets))
    found = binaries.ensure(["etcd", "kube-apiserver", "kubectl"], root=tmp_path, build=False)
    assert found == {n: assets / n for n in ("etcd", "kube-apiserver", "kubectl")}


def test_kubebuilder_assets_without_apiserver_name_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = _fake_output(tmp_path / "assets", ("etcd",))
    monkeypatch.setenv(binaries.ASSETS_ENV, str(assets))
    with pytest.raises(binaries.Unavailable, match=r"KUBEBUILDER_ASSETS=.* lacks kube-apiserver"):
        binaries.ensure(["etcd"], root=tmp_path, build=False)


def test_unknown_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names: unknown binaries \\['kube-dns'\\]"):
        binaries.ensure(["kube-dns"], root=tmp_path, build=False)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hack.k8s", "binaries", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def test_cli_prints_the_reason_and_exits_1_or_0_with_best_effort(tmp_path: Path) -> None:
    env = {
        **os.environ,
        binaries.ASSETS_ENV: str(_fake_output(tmp_path / "assets", ("kube-apiserver",))),
        binaries.CACHE_ENV: str(tmp_path / "cache"),
    }
    strict = _cli("etcd", env=env)
    assert strict.returncode == 1
    lines = strict.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{binaries.ASSETS_ENV}=")
    assert "lacks etcd" in lines[0]
    lenient = _cli("etcd", "--best-effort", env=env)
    assert lenient.returncode == 0
    assert lenient.stdout == strict.stdout


def test_cli_prints_the_paths(tmp_path: Path) -> None:
    assets = _fake_output(tmp_path / "assets", ("etcd", "kube-apiserver"))
    env = {**os.environ, binaries.ASSETS_ENV: str(assets), binaries.CACHE_ENV: str(tmp_path)}
    result = _cli("etcd", "kube-apiserver", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"etcd\t{assets / 'etcd'}",
        f"kube-apiserver\t{assets / 'kube-apiserver'}",
    ]


@pytest.mark.usefixtures("no_assets")
def test_building_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binaries.BUILD_ENV, "0")
    with pytest.raises(binaries.Unavailable) as raised:
        binaries.ensure(["etcd", "kube-scheduler"], root=tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert "etcd, kube-scheduler" in message
    assert f"{binaries.BUILD_ENV}=0" in message
    assert binaries.ASSETS_ENV in message
    assert not binaries.bin_dir(tmp_path).exists() or not any(binaries.bin_dir(tmp_path).iterdir())


def test_assets_serve_the_minimum_when_nothing_can_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = _fake_output(tmp_path / "assets", ("etcd", "kube-apiserver", "kubectl", "helm"))
    monkeypatch.setenv(binaries.ASSETS_ENV, str(assets))
    monkeypatch.setenv(binaries.BUILD_ENV, "0")
    found = binaries.ensure(binaries.CONTROL_PLANE_MINIMUM, root=tmp_path)
    assert found == {n: assets / n for n in binaries.CONTROL_PLANE_MINIMUM}
    with pytest.raises(binaries.Unavailable, match=r"\(kube-controller-manager; "):
        binaries.ensure(binaries.CONTROL_PLANE, root=tmp_path)
