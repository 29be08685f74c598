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
