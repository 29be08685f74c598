"""Suite-wide fixtures: a real Kubernetes control plane (and cluster) for the operator's tests."""

from __future__ import annotations

import contextlib
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.k8s import binaries
from hack.k8s import cluster as cluster_module
from hack.k8s.cluster import Cluster
from hack.k8s.controlplane import ControlPlane

# Which binaries a fixture needs: they are found or built once, before the first test runs,
# so a cold build (minutes) never counts against a test's timeout.
FIXTURE_BINARIES: dict[str, tuple[str, ...]] = {
    "control_plane": binaries.CONTROL_PLANE_MINIMUM,
    "k8s_binaries": (*binaries.CONTROL_PLANE, "kube-scheduler"),
    "cluster": binaries.ALL,
}
# Got (built) when possible, but their absence is no reason to skip: with only envtest's
# assets the control plane runs without a controller-manager (tests needing one skip).
FIXTURE_OPTIONAL: dict[str, tuple[str, ...]] = {"control_plane": ("kube-controller-manager",)}
# Tests that use a fixture get its marker, so `-m "not k8s"` deselects them.
FIXTURE_MARKERS: dict[str, str] = {
    "control_plane": "k8s",
    "k8s_binaries": "k8s",
    "cluster": "cluster",
}
# Why the binaries are unavailable (skip) or why getting them failed (error), per fixture.
_unavailable: dict[str, str] = {}
_failed: dict[str, str] = {}
# The session's control plane once started, or the exception that stopped it starting.
_control_plane: list[ControlPlane | BaseException] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in names:
                item.add_marker(getattr(pytest.mark, marker))


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return  # listing tests must not start a build
    used = {
        fixture
        for item in session.items
        for fixture in FIXTURE_BINARIES
        if fixture in getattr(item, "fixturenames", ())
    }
    for fixture in sorted(used):
        try:
            binaries.ensure(FIXTURE_BINARIES[fixture])
            with contextlib.suppress(binaries.Unavailable):
                binaries.ensure(FIXTURE_OPTIONAL.get(fixture, ()))
        except binaries.Unavailable as exc:
            _unavailable[fixture] = str(exc)
        except (binaries.BuildError, OSError) as exc:
            # Not a skip: the machine can build them and the build broke. Tests using the
            # fixture error with this message; the rest of the suite still runs.
            _failed[fixture] = f"{type(exc).__name__}: {exc}"
    if "control_plane" in used and not {"control_plane"} & (_unavailable.keys() | _failed.keys()):
        _start_control_plane(session.config)


def require_binaries(fixture: str) -> None:
    """Skip, with the one-line reason, when the fixture's binaries cannot be had here."""
    if fixture in _failed:
        pytest.fail(f"getting the Kubernetes binaries failed: {_failed[fixture]}", pytrace=False)
    reason = _unavailable.get(fixture)
    if reason is None:
        try:
            binaries.ensure(FIXTURE_BINARIES[fixture], build=False)
        except binaries.Unavailable as exc:
            reason = str(exc)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def k8s_binaries() -> dict[str, Path]:
    """The control plane's binaries (for tests that start their own ControlPlane)."""
    require_binaries("k8s_binaries")
    return binaries.ensure(FIXTURE_BINARIES["k8s_binaries"], build=False)


def _start_control_plane(config: pytest.Config) -> ControlPlane | BaseException:
    """Start the session's control plane (or record why it failed to start)."""
    try:
        binaries.ensure(["kube-controller-manager"], build=False)
        with_controller_manager = True
    except binaries.Unavailable:
        with_controller_manager = False
    workdir = Path(tempfile.mkdtemp(prefix="ostinato-control-plane-"))
    plane = ControlPlane(workdir, with_controller_manager=with_controller_manager)
    started: ControlPlane | BaseException
    try:
        plane.start()
        config.add_cleanup(plane.stop)
        started = plane
    except Exception as exc:
        started = exc
    _control_plane.append(started)
    return started


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager on loopback for the whole session.

    Started when collection finishes (not inside the first test, whose timeout a start on a
    loaded machine, tens of seconds, would eat). Without a controller-manager binary
    (envtest's assets only) it runs without one; `.with_controller_manager` says which.
    """
    require_binaries("control_plane")
    started = _control_plane[0] if _control_plane else _start_control_plane(request.config)
    if isinstance(started, BaseException):
        pytest.fail(f"the control plane did not start: {started}", pytrace=False)
    yield started
    started.stop()


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def k8s_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta

    name = _namespace_name(request.node.name)
    with control_plane.api_client() as client:
        core = CoreV1Api(client)
        core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            core.delete_namespace(name)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The single-node cluster (hack/k8s/cluster.py) with localhost/ostinato:dev imported.

    One left running by `make cluster-up` is reused and left running; otherwise it is brought
    up (or adopted from a crashed session) here and torn down at the end, and anything the
    teardown leaves behind is an error.
    The machine-wide lock is held throughout, so two sessions never share or race a cluster.
    """
    require_binaries("cluster")
    why = cluster_module.why_unavailable()
    if why is not None:
        pytest.skip(why)
    handle = cluster_module.Cluster()
    with cluster_module.locked(handle.settings.lock_wait):
        # Ours to stop: one we start, or one a crashed session started and never stopped.
        owned = handle.up(reuse=True) or not handle.kept
        try:
            handle.ensure_image()
            yield handle
        finally:
            if owned:
                handle.down()
                left = cluster_module.residue(handle.node)
                assert not left, f"cluster teardown left behind: {left}"


@pytest.fixture
def cluster_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in the cluster for one test, deleted afterwards (without waiting)."""
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
