"""`kubectl ostinato`'s command line without a cluster: every mistake is one line and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from ostinato_operator._plugin import main


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["frob"], "argument VERB: invalid choice: 'frob'"),
        (["pause"], "the following arguments are required: workflow (--help for usage)"),
        (["scale", "wf", "loop", "--replicas", "x"], "--replicas: invalid int value: 'x'"),
        (["scale", "wf", "loop", "--max-replicas", "4.5"], "--max-replicas: invalid int value"),
        (["pause", "wf", "--wait", "--timeout", "0"], "--timeout: must be > 0 seconds, got 0"),
        (["get", "-o", "xml"], "argument -o/--output: invalid choice: 'xml'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert said in err


def test_a_missing_kubeconfig_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    assert main(["get"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"kubectl ostinato: kubeconfig {tmp_path / 'absent'}: Invalid kube-config file. "
        "No configuration found.\n"
    )


def test_an_unreachable_api_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    assert main(["--kubeconfig", str(config), "get"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kubectl ostinato: cannot reach https://127.0.0.1:1: ")
    assert err.count("\n") == 1
