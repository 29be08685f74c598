"""The chart renders an operator that is restricted, probed, and wired to the values it is given."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from ostinato_operator._cli import build_parser, settings_from_args
from ostinato_operator._settings import ENV_PREFIX, OperatorSettings

from .conftest import CHART, NAMESPACE, RELEASE, Manifest, Render, RenderError

ROOT = CHART.parents[1]


def _one(objects: list[Manifest], kind: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def _kinds(objects: list[Manifest]) -> set[str]:
    return {o["kind"] for o in objects}


def _container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    container: dict[str, Any] = containers[0]
    return container


def _port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert name in ports, f"no container port named {name!r} in {ports}"
    return int(ports[name])


def test_lint_strict(helm: Path) -> None:
    for extra in ([], ["--set", "watch.namespaces={a,b}"], ["--set", "rbac.create=false"]):
        result = subprocess.run(
            [str(helm), "lint", "--strict", str(CHART), *extra],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


def test_chart_versions_follow_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


def test_default_render(render: Render) -> None:
    objects = render()
    assert {"Deployment", "ServiceAccount", "Service"} <= _kinds(objects)
    assert "ServiceMonitor" not in _kinds(objects)
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, obj["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", obj["metadata"]["name"]
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding") and not obj["kind"].startswith(
            ("ValidatingWebhook", "MutatingWebhook")
        ):
            assert obj["metadata"].get("namespace") is not None, obj["metadata"]["name"]


def test_deployment_is_restricted(render: Render) -> None:
    deployment = _one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace), host_namespace
    container = _container(deployment)
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx.get("privileged", False) is False
    # The one writable path is an emptyDir at /tmp; nothing from the host.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert all("hostPath" not in v for v in pod["volumes"])
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]


def test_probes_hit_kopf_liveness_port(render: Render) -> None:
    for port in (8081, 18081):
        container = _container(_one(render({"liveness": {"port": port}}), "Deployment"))
        assert _port(container, "liveness") == port
        for probe, path in (
            ("livenessProbe", "/healthz"),
            # A standby (waiting for the Lease) is alive but not ready: it answers 503 here.
            ("readinessProbe", "/healthz?probe=readiness"),
        ):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert get["port"] in ("liveness", port)
        args = container["args"]
        assert args[args.index("--liveness-port") + 1] == str(port)


def test_grace_period_covers_the_shutdown_timeout(render: Render) -> None:
    """The kubelet's SIGKILL would keep the Lease held: the grace period outlasts the operator's
    own bound on its shutdown, whatever that is set to."""
    for values, bound in (({}, 10.0), ({"operator": {"shutdownTimeoutSeconds": 20.5}}, 20.5)):
        deployment = _one(render(values), "Deployment")
        env = {e["name"]: e.get("value") for e in _container(deployment)["env"]}
        settings = OperatorSettings.from_env({k: v for k, v in env.items() if v is not None})
        assert settings.shutdown_timeout_seconds == bound
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert isinstance(grace, int)
        assert bound + 3 <= grace <= bound + 10


def test_args_and_image(render: Render) -> None:
    container = _container(_one(render(), "Deployment"))
    args = container["args"]
    assert args[0] == "operator"
    assert "--all-namespaces" in args
    assert "--namespace" not in args
    assert args[args.index("--metrics-port") + 1] == "9090"
    assert _port(container, "metrics") == 9090
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"ghcr.io/ostinato/ostinato:{chart['appVersion']}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OSTINATO_IMAGE"] == container["image"]

    values = {
        "image": {"repository": "localhost/ostinato", "tag": "dev", "pullPolicy": "Never"},
        "watch": {"namespaces": ["team-a", "team-b"]},
        "metrics": {"port": 19090},
    }
    container = _container(_one(render(values), "Deployment"))
    args = container["args"]
    assert "--all-namespaces" not in args
    watched = [args[i + 1] for i, a in enumerate(args) if a == "--namespace"]
    assert watched == ["team-a", "team-b"]
    assert args[args.index("--metrics-port") + 1] == "19090"
    assert container["image"] == "localhost/ostinato:dev"
    assert container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OSTINATO_IMAGE"] == "localhost/ostinato:dev"


def test_the_pod_budget_reaches_the_operator_under_one_name(render: Render) -> None:
    """operator.maxPodsPerWorkflow is the operator's max_pods_per_workflow: same default, and
    a value given to the chart is the one the operator parses."""
    default = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]["maxPodsPerWorkflow"]
    assert default == OperatorSettings().max_pods_per_workflow
    for values, want in (({}, default), ({"operator": {"maxPodsPerWorkflow": 200}}, 200)):
        args = _container(_one(render(values), "Deployment"))["args"]
        assert args[args.index("--max-pods-per-workflow") + 1] == str(want)
        parsed = settings_from_args(build_parser().parse_args(args[1:]))
        assert parsed.max_pods_per_workflow == want


def test_each_release_holds_a_lease_of_its_own(render: Render) -> None:
    """Two releases in one namespace must not share the operator's Lease: one would wait
    for the other for good."""
    names = []
    for release in ("one", "two"):
        deployment = _one(render({"fullnameOverride": release}), "Deployment")
        env = {e["name"]: e.get("value") for e in _container(deployment)["env"]}
        assert env["OSTINATO_LEASE_NAME"] == deployment["metadata"]["name"]
        names.append(env["OSTINATO_LEASE_NAME"])
    assert names == ["one", "two"]


def test_metrics_service_selects_the_operator_pod(render: Render) -> None:
    objects = render()
    deployment = _one(objects, "Deployment")
    services = [o for o in objects if o["kind"] == "Service" and "metrics" in o["metadata"]["name"]]
    assert len(services) == 1
    service = services[0]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9090
    assert _port(_container(deployment), port["targetPort"]) == 9090


def test_service_account(render: Render) -> None:
    objects = render()
    account = _one(objects, "ServiceAccount")
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["namespace"] == NAMESPACE

    objects = render({"serviceAccount": {"create": False, "name": "existing"}})
    assert "ServiceAccount" not in _kinds(objects)
    assert _one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == (
        "existing"
    )


def test_service_monitor_only_where_its_api_exists(
    render: Render, render_error: RenderError
) -> None:
    enabled = {"serviceMonitor": {"enabled": True}}
    error = render_error(enabled)
    assert "serviceMonitor.enabled" in error
    assert "monitoring.coreos.com/v1" in error

    for extra in (("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"), ()):
        values = enabled if extra else {"serviceMonitor": {"enabled": True, "force": True}}
        objects = render(values, *extra)
        monitor = _one(objects, "ServiceMonitor")
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        selected = [
            o
            for o in objects
            if o["kind"] == "Service" and wanted <= o["metadata"]["labels"].items()
        ]
        assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-ostinato-metrics"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}


def test_webhook_switch_reaches_the_operator(render: Render) -> None:
    container = _container(
        _one(render({"webhook": {"enabled": True, "port": 10443}}), "Deployment")
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OSTINATO_WEBHOOK"] == "true"
    assert env["OSTINATO_WEBHOOK_PORT"] == "10443"
    assert env["OSTINATO_WEBHOOK_HOST"] == f"{RELEASE}-ostinato-webhook.{NAMESPACE}.svc"
    assert _port(container, "webhook") == 10443

    container = _container(_one(render({"webhook": {"enabled": False}}), "Deployment"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OSTINATO_WEBHOOK"] == "false"
    assert "OSTINATO_WEBHOOK_HOST" not in env
    assert "webhook" not in {p["name"] for p in container["ports"]}


def _service_link_names(service: str, ports: list[dict[str, Any]]) -> set[str]:
    """The variables the kubelet gives every pod in the namespace for a Service (docker links)."""
    prefix = service.upper().replace("-", "_")
    names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in ports:
        proto = port.get("protocol", "TCP")
        names |= {f"{prefix}_PORT_{port['port']}_{proto}{s}" for s in ("", "_ADDR", "_PORT")}
        if "name" in port:
            names.add(f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def test_the_documented_release_name_gets_no_service_links(helm: Path) -> None:
    """`helm install ostinato ...` (the docs' name) made Services whose link variables,
    OSTINATO_METRICS_PORT=tcp://10.0.0.227:9090 among them, read as the operator's settings."""
    result = subprocess.run(
        [str(helm), "template", "ostinato", str(CHART), "--namespace", "ostinato-system"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    links = set().union(
        *(
            _service_link_names(o["metadata"]["name"], o["spec"]["ports"])
            for o in objects
            if o["kind"] == "Service"
        )
    )
    settings = {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}
    # The collision is real: without the switch below the operator would read these.
    assert links & settings, sorted(links)
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False
    # And what the pod does get parses: the operator starts with the chart's own variables.
    env = {e["name"]: e["value"] for e in _container(deployment)["env"] if "value" in e}
    OperatorSettings.from_env(env)


def test_the_hub_volume_values_reach_the_operators_settings(render: Render) -> None:
    def settings(values: dict[str, Any] | None) -> OperatorSettings:
        env = {
            e["name"]: e["value"]
            for e in _container(_one(render(values), "Deployment"))["env"]
            if "value" in e
        }
        return OperatorSettings.from_env(env)

    default = settings(None)
    assert default.state_volume_size == "1Gi"
    assert default.state_storage_class is None  # the cluster's default StorageClass
    chosen = settings({"operator": {"stateVolumeSize": "5Gi", "stateStorageClass": "fast-ssd"}})
    assert chosen.state_volume_size == "5Gi"
    assert chosen.state_storage_class == "fast-ssd"


def test_a_hub_volume_size_that_is_no_quantity_is_refused(render_error: RenderError) -> None:
    assert "stateVolumeSize" in render_error({"operator": {"stateVolumeSize": "lots"}})


def _settings(render: Render, values: dict[str, Any] | None) -> OperatorSettings:
    env = {
        e["name"]: e["value"]
        for e in _container(_one(render(values), "Deployment"))["env"]
        if "value" in e
    }
    return OperatorSettings.from_env(env)


def test_network_policies_are_on_and_admit_this_operators_pods(render: Render) -> None:
    default = yaml.safe_load((CHART / "values.yaml").read_text())["networkPolicy"]
    assert default["enabled"] is OperatorSettings().network_policy is True
    objects = render()
    settings = _settings(render, None)
    assert settings.network_policy
    # The hubs admit the operator by its namespace and labels: those of the pods this chart runs.
    assert settings.network_policy_operator_namespace == NAMESPACE
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert settings.network_policy_operator_pod_labels
    assert settings.network_policy_operator_pod_labels.items() <= pod_labels.items()
    # Not the labels every pod of the release shares: hub and loop pods carry
    # app.kubernetes.io/name ostinato too.
    assert settings.network_policy_operator_pod_labels["app.kubernetes.io/component"] == "operator"
    assert not settings.metrics_scraper

    assert not _settings(render, {"networkPolicy": {"enabled": False}}).network_policy


def test_the_metrics_scraper_values_reach_the_operators_settings(render: Render) -> None:
    namespaces = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    pods = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["prometheus"]}]}
    for scraper in (
        {"namespaceSelector": namespaces, "podSelector": pods},
        {"namespaceSelector": namespaces},
        {"podSelector": pods},
    ):
        settings = _settings(
            render, {"networkPolicy": {"enabled": True, "metricsScraper": scraper}}
        )
        assert settings.metrics_scraper
        got = (
            settings.network_policy_metrics_scraper_namespace_selector.manifest(),
            settings.network_policy_metrics_scraper_pod_selector.manifest(),
        )
        assert got == (scraper.get("namespaceSelector", {}), scraper.get("podSelector", {}))
