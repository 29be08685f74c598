"""The operator's command line and environment become one OperatorSettings (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ostinato_operator import _cli
from ostinato_operator._cli import build_parser, settings_from_args
from ostinato_operator._settings import OperatorSettings


def settings(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> OperatorSettings:
    for name in ("KUBERNETES_SERVICE_HOST", "OSTINATO_LEASE_NAME", "POD_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_from_args(build_parser().parse_args(argv))


def test_the_lease_name_comes_from_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings([], monkeypatch).lease_name == "ostinato-operator"
    chart = settings([], monkeypatch, OSTINATO_LEASE_NAME="release-a")
    assert chart.lease_name == "release-a"
    flag = settings(["--lease-name", "b"], monkeypatch, OSTINATO_LEASE_NAME="release-a")
    assert flag.lease_name == "b"


def test_the_shutdown_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings([], monkeypatch).shutdown_timeout_seconds == 10.0
    chart = settings([], monkeypatch, OSTINATO_SHUTDOWN_TIMEOUT_SECONDS="20")
    assert chart.shutdown_timeout_seconds == 20.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OSTINATO_SHUTDOWN_TIMEOUT_SECONDS": "2"},
            "lease_request_timeout_seconds (3.0) must be under shutdown_timeout_seconds (2.0)",
        ),
        (
            {"OSTINATO_LEASE_RENEW_SECONDS": "20"},
            "lease_renew_seconds (20.0) must be under lease_duration_seconds (15)",
        ),
        ({"OSTINATO_SHUTDOWN_TIMEOUT_SECONDS": "-1"}, "shutdown_timeout_seconds: Input should"),
    ],
)
def test_inconsistent_timings_are_one_clear_line(
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ostinato_operator._cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["--no-leader-elect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ostinato-operator: ")
    assert message in err[0]


def test_network_policies_are_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings([], monkeypatch).network_policy is True
    assert settings([], monkeypatch, OSTINATO_NETWORK_POLICY="false").network_policy is False
    flag = settings(["--network-policy"], monkeypatch, OSTINATO_NETWORK_POLICY="false")
    assert flag.network_policy is True
    assert settings(["--no-network-policy"], monkeypatch).network_policy is False


def test_the_operator_admits_itself_by_its_pods_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_cli, "_SA_NAMESPACE", tmp_path / "no-service-account")
    assert settings([], monkeypatch).network_policy_operator_namespace is None
    pod = settings([], monkeypatch, POD_NAMESPACE="ops")
    assert pod.network_policy_operator_namespace == "ops"
    chart = settings(
        [],
        monkeypatch,
        POD_NAMESPACE="ops",
        OSTINATO_NETWORK_POLICY_OPERATOR_NAMESPACE="ostinato-system",
        OSTINATO_NETWORK_POLICY_OPERATOR_POD_LABELS='{"app.kubernetes.io/name": "ostinato"}',
    )
    assert chart.network_policy_operator_namespace == "ostinato-system"
    assert chart.network_policy_operator_pod_labels == {"app.kubernetes.io/name": "ostinato"}


def test_the_metrics_scraper_selectors_are_json_label_selectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unset = settings([], monkeypatch)
    assert not unset.metrics_scraper
    chosen = settings(
        [],
        monkeypatch,
        OSTINATO_NETWORK_POLICY_METRICS_SCRAPER_NAMESPACE_SELECTOR="{}",
        OSTINATO_NETWORK_POLICY_METRICS_SCRAPER_POD_SELECTOR='{"matchExpressions": '
        '[{"key": "app", "operator": "In", "values": ["prometheus"]}]}',
    )
    assert chosen.metrics_scraper
    assert chosen.network_policy_metrics_scraper_namespace_selector.manifest() == {}
    assert chosen.network_policy_metrics_scraper_pod_selector.manifest() == {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["prometheus"]}]
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OSTINATO_NETWORK_POLICY_METRICS_SCRAPER_POD_SELECTOR": "app=prometheus"},
            "network_policy_metrics_scraper_pod_selector: not JSON",
        ),
        (
            {"OSTINATO_NETWORK_POLICY_METRICS_SCRAPER_NAMESPACE_SELECTOR": '{"matchLabel": {}}'},
            "network_policy_metrics_scraper_namespace_selector.matchLabel: Extra inputs",
        ),
        (
            {
                "OSTINATO_NETWORK_POLICY_METRICS_SCRAPER_POD_SELECTOR": '{"matchExpressions": '
                '[{"key": "app", "operator": "In"}]}'
            },
            "matchExpressions.0: app: operator In needs values",
        ),
        (
            {"OSTINATO_NETWORK_POLICY_OPERATOR_POD_LABELS": '["app"]'},
            "network_policy_operator_pod_labels: Input should be a valid dictionary",
        ),
        (
            {"OSTINATO_NETWORK_POLICY_OPERATOR_NAMESPACE": "Ops_1"},
            "network_policy_operator_namespace: String should match pattern",
        ),
    ],
)
def test_a_bad_network_policy_setting_is_one_clear_line(
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ostinato_operator._cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["--no-leader-elect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0], err[0]
