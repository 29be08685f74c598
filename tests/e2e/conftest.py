"""The cluster under test for tests/e2e, and the chart installed on it for one test.

By default the cluster is the project's single-node cluster (the `cluster` fixture of
tests/conftest.py) with the image `localhost/ostinato:dev` built from the Dockerfile and imported
into its containerd. With OSTINATO_E2E_KUBECONFIG set (`make e2e-kind`, hack/kind.sh) it is the
cluster that kubeconfig names, whose nodes already have that image (`kind load docker-image`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hack.k8s import binaries, chart

from ._kube import Kube, poll

ROOT = Path(__file__).resolve().parents[2]
IMAGE_REPOSITORY, IMAGE_TAG = "localhost/ostinato", "dev"
EXTERNAL_ENV = "OSTINATO_E2E_KUBECONFIG"
CRD = chart.CRD
# The ValidatingWebhookConfiguration the operator registers (OperatorSettings.webhook_config_name).
WEBHOOK_CONFIG = "validate.ostinato.dev"
# The PersistentVolumeClaim the operator makes for a workflow with a durable queue, and its size
# (ostinato_operator._settings.OperatorSettings.state_volume_size).
STATE_CLAIM, STATE_SIZE = "counter-hub-state", "1Gi"
# uid/gid of the ostinato image's user, who must be able to write the hub's state directory.
IMAGE_UID = 10001


def _local_cluster_kube(request: pytest.FixtureRequest, helm_home: Path) -> Kube:
    try:
        cluster = request.getfixturevalue("cluster")
    except pytest.FixtureLookupError:
        pytest.skip("missing: the `cluster` fixture of tests/conftest.py (hack/k8s/cluster.py)")
    # The `cluster` fixture has built (when its inputs changed) and imported the image from the
    # project's own Dockerfile, so the test runs the code in this checkout.
    from hack.k8s import images

    assert f"{IMAGE_REPOSITORY}:{IMAGE_TAG}" == images.IMAGE_REF, images.IMAGE_REF
    tools = binaries.ensure(["kubectl", "helm"], build=False)
    return Kube(
        kubeconfig=cluster.kubeconfig,
        kubectl_bin=tools["kubectl"],
        helm_bin=tools["helm"],
        helm_home=helm_home,
        pod_network_routable=True,
    )


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Kube:
    helm_home = tmp_path_factory.mktemp("helm-home")
    external = os.environ.get(EXTERNAL_ENV)
    if not external:
        return _local_cluster_kube(request, helm_home)
    try:
        tools = binaries.ensure(["kubectl", "helm"])
    except binaries.Unavailable as exc:
        pytest.skip(f"kubectl/helm unavailable: {exc}")
    return Kube(
        kubeconfig=Path(external),
        kubectl_bin=tools["kubectl"],
        helm_bin=tools["helm"],
        helm_home=helm_home,
        pod_network_routable=False,
    )


@dataclass(frozen=True)
class Install:
    """The chart installed for one test: the operator's namespace and the one it watches."""

    kube: Kube
    release: str
    operator_namespace: str
    workflow_namespace: str

    def diagnose(self) -> str:
        """What to read when something does not happen: pods, events, the operator's log."""
        kube, parts = self.kube, []
        for ns in (self.operator_namespace, self.workflow_namespace):
            pods = kube.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False)
            events = kube.kubectl(
                "get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False
            )
            parts += [f"pods in {ns}:\n{pods.stdout}{pods.stderr}", f"events:\n{events.stdout}"]
        log = kube.kubectl(
            "logs", "-n", self.operator_namespace, f"deployment/{self.release}-ostinato",
            "--tail=60", check=False,
        )  # fmt: skip
        parts.append(f"operator log:\n{log.stdout}{log.stderr}")
        return "\n".join(parts)

    def apply_ready(self, example: Path, workflow: str, show: Callable[[], str]) -> None:
        """``kubectl apply`` an example into the watched namespace and wait for its Workflow's
        Ready condition (5 minutes); on failure, say why with ``show()`` and ``diagnose()``."""
        ns, kube = self.workflow_namespace, self.kube
        kube.kubectl("apply", "-n", ns, "-f", str(example))
        wait = kube.kubectl(
            "wait", "-n", ns, "--for=condition=Ready", f"workflow/{workflow}", "--timeout=300s",
            check=False, timeout=320,
        )  # fmt: skip
        assert wait.returncode == 0, f"{wait.stderr.strip()}; status: {show()}; {self.diagnose()}"


def _has_default_storage_class(kube: Kube) -> bool:
    classes = kube.get("storageclasses")["items"]
    default = "storageclass.kubernetes.io/is-default-class"
    return any(c["metadata"].get("annotations", {}).get(default) == "true" for c in classes)


def _state_volume(kube: Kube, name: str, namespace: str, directory: Path) -> None:
    """A hostPath PersistentVolume bound in advance to the workflow's state claim, for a
    cluster without a default StorageClass (the project's single-node cluster has one:
    hack/k8s/volumes.py; `make e2e-kind` clusters have kind's)."""
    directory.mkdir(parents=True)
    os.chown(directory, IMAGE_UID, IMAGE_UID)
    directory.chmod(0o770)
    manifest = textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: PersistentVolume
        metadata:
          name: {name}
          labels: {{ostinato.dev/e2e: "true"}}
        spec:
          capacity: {{storage: {STATE_SIZE}}}
          accessModes: [ReadWriteOnce]
          persistentVolumeReclaimPolicy: Retain
          claimRef: {{namespace: {namespace}, name: {STATE_CLAIM}}}
          hostPath: {{path: {directory}, type: Directory}}
        """
    )
    kube.kubectl("apply", "-f", "-", input=manifest)


def _webhook_namespaces(kube: Kube) -> set[str]:
    """Namespaces of the Services the registered admission webhook sends Workflows to."""
    registration = kube.get("validatingwebhookconfiguration", WEBHOOK_CONFIG)
    if registration is None:
        return set()
    configs = [w["clientConfig"] for w in registration.get("webhooks", [])]
    return {c.get("service", {}).get("namespace", "<url>") for c in configs}


def _drop_webhook_registration(kube: Kube, operator_namespace: str) -> None:
    """The garbage collector removes the operator's webhook registration some seconds after
    `helm uninstall` (its owner, the release's ClusterRole, is gone); remove it at once when it
    points at this test's operator, so the next module's applies never meet a Service that is
    gone."""
    if operator_namespace in _webhook_namespaces(kube):
        kube.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, check=False)


@pytest.fixture(scope="module")
def install(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """The chart, as a user installs it, with the operator watching one fresh namespace; shared
    by the tests of a module, each of which deletes its Workflow at the end. Per module, not per
    session: test_docs_kubernetes.py installs the page's cluster-wide release in between, and two
    operators must not act on one cluster's Workflows."""
    tmp_path = tmp_path_factory.mktemp("e2e-volumes")
    suffix = secrets.token_hex(3)
    release, operator_ns, workflow_ns = f"e2e-{suffix}", f"ostinato-e2e-{suffix}", f"e2e-{suffix}"
    volume = f"e2e-{suffix}-hub-state"
    installed = Install(kube, release, operator_ns, workflow_ns)
    kube.kubectl("create", "namespace", workflow_ns)
    try:
        local_volume = kube.pod_network_routable and not _has_default_storage_class(kube)
        if local_volume:
            _state_volume(kube, volume, workflow_ns, tmp_path / "hub-state")
        installing = chart.install(
            kube, release, operator_ns, image=f"{IMAGE_REPOSITORY}:{IMAGE_TAG}",
            watch=[workflow_ns], values={"operator.statusIntervalSeconds": "2"},
        )  # fmt: skip
        assert kube.get("crd", CRD) is not None, "helm install left no Workflow CRD"
        # NOTES.txt: the first commands, for the namespace this release watches.
        assert f"kubectl get owf -n {workflow_ns}" in installing.stdout, installing.stdout
        assert "--for=condition=Ready" in installing.stdout, installing.stdout
        # The operator registers its admission webhook once it runs; until then an apply may
        # meet no webhook, or one left behind by an operator that is gone.
        poll(
            lambda: _webhook_namespaces(kube) == {operator_ns} or None,
            timeout=120, what=f"{WEBHOOK_CONFIG} pointing at the operator in {operator_ns}",
            show=lambda: f"{_webhook_namespaces(kube)}; {installed.diagnose()}",
        )  # fmt: skip
        yield installed
    finally:
        chart.uninstall(kube, release, operator_ns, [workflow_ns])
        _drop_webhook_registration(kube, operator_ns)
        kube.kubectl("delete", "pv", volume, "--ignore-not-found", check=False)
        shutil.rmtree(tmp_path / "hub-state", ignore_errors=True)
