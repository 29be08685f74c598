"""The operator's command line and environment become one OperatorSettings (no cluster needed)."""

from __future__ import annotations

import pytest

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
