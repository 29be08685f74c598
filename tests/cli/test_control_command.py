"""`ostinato control` and where the control token comes from: `ostinato run` makes one per run
(a private file it names at start-up, removed at exit), `ostinato hub` takes it from its key
file or the environment (and refuses to start without it when its keys come from there), and
the command sends it. Real processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from ostinato._cli import main
from ostinato._messaging._security import ENV_VARS, generate_keys, save_keys
from ostinato._messaging._token import CONTROL_TOKEN_ENV, read_token_file, token_from_keys_file
from ostinato._observe._http import ObservabilityServer
from tests.observability.support import TOKEN, CountingSource

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0

WORKFLOW = """\
apiVersion: ostinato.dev/v1alpha1
kind: Workflow
metadata: {name: steered}
spec:
  loops:
    - name: beat
      producer: {name: tick, class: IntervalProducer, config: {periodSeconds: 0.02}}
    - name: other
      producer: {name: tick, class: IntervalProducer, config: {periodSeconds: 0.02}}
"""


class Lines:
    """A process's stream, read by a thread: wait for a line without blocking on it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str) -> str:
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((ln for ln in self.lines if text in ln), None), timeout=WAIT
            )
        assert found, f"no line with {text!r} in:\n{''.join(self.lines)}"
        return found


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ostinato", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    return proc, Lines(proc.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(WAIT)


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "runtime"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.delenv(CONTROL_TOKEN_ENV, raising=False)
    return folder


def control(*args: str) -> tuple[int, str, str]:
    """`ostinato control ARGS` in this process: exit code, stdout, stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["control", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.timeout(90)
def test_run_makes_a_token_names_its_file_and_control_uses_it(
    tmp_path: Path, runtime_dir: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    proc, out = start(
        "run", str(wf), "--metrics-port", str(free_port()), "--status-every", "0",
        "--live", "never",
        env={"XDG_RUNTIME_DIR": str(runtime_dir)},
    )  # fmt: skip
    try:
        line = out.wait_for("serving /metrics")
        url = line.split(" on ")[1].split()[0]
        path = Path(line.split("(control token: ")[1].split(" (new)")[0])
        assert path.parent == runtime_dir / "ostinato"
        assert path.name == f"steered-{url.rsplit(':', 1)[1]}.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = read_token_file(path)
        assert token not in "".join(out.lines)  # the path is shown, never the token

        code, printed, _ = control("--url", url, "--control-token-file", str(path),
                                   "--loop", "beat", "paused")  # fmt: skip
        assert code == 0
        assert printed.split() == ["LOOP", "DESIRED", "beat", "paused", "other", "running"]
        code, printed, _ = control(
            "--url", url, "--control-token-file", str(path), "--json", "stopped"
        )
        assert (code, json.loads(printed)) == (
            0,
            {"loops": {"beat": "stopped", "other": "stopped"}},
        )

        wrong = tmp_path / "wrong.token"
        wrong.write_text("not-the-token-0123456789\n")
        code, printed, err = control("--url", url, "--control-token-file", str(wrong), "running")
        assert (code, printed) == (1, "")
        assert err.startswith("ostinato control: "), err
        assert "HTTP 401: " in err, err
        assert len(err.splitlines()) == 1
        code, _, err = control("--url", url, "--control-token-file", str(path), "--loop", "zz",
                               "running")  # fmt: skip
        assert code == 1
        assert "HTTP 404: loop:" in err, err
    finally:
        stop(proc)
    assert not path.exists(), "the run's token file outlived the run"


@pytest.mark.timeout(60)
def test_a_given_token_file_is_used_and_kept(tmp_path: Path, runtime_dir: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    given = tmp_path / "mine.token"
    given.write_text(TOKEN + "\n")
    proc, out = start(
        "run", str(wf), "--metrics-port", str(free_port()), "--status-every", "0",
        "--live", "never",
        "--control-token-file", str(given),
    )  # fmt: skip
    try:
        line = out.wait_for("serving /metrics")
        assert f"(control token: {given})" in line
        url = line.split(" on ")[1].split()[0]
        code, _, err = control("--url", url, "paused", "--loop", "beat")
        assert code == 1
        assert "no control token" in err  # neither a file, nor keys, nor the variable
        os.environ[CONTROL_TOKEN_ENV] = TOKEN
        try:
            assert control("--url", url, "paused", "--loop", "beat")[0] == 0
        finally:
            del os.environ[CONTROL_TOKEN_ENV]
    finally:
        stop(proc)
    assert given.read_text() == TOKEN + "\n"
    assert list(runtime_dir.iterdir()) == []  # nothing made: the token was given


@pytest.mark.timeout(30)
def test_control_with_a_key_file(tmp_path: Path, runtime_dir: Path) -> None:
    keys = tmp_path / "wf.keys"
    assert main(["keys", "--out", str(keys)]) == 0
    source = CountingSource()
    with ObservabilityServer(source, control_token=token_from_keys_file(keys)) as server:
        code, printed, _ = control("--url", server.url, "--keys", str(keys), "paused")
        assert (code, printed.split()) == (0, ["LOOP", "DESIRED", "a", "paused"])
        other = tmp_path / "other.keys"
        assert main(["keys", "--out", str(other)]) == 0
        code, _, err = control("--url", server.url, "--keys", str(other), "running")
        assert code == 1
        assert "wrong bearer token" in err
    assert len(source.calls) == 1
    code, _, err = control("--url", server.url, "--keys", str(keys), "running")
    assert code == 1
    assert err.startswith("ostinato control: cannot read")


@pytest.mark.timeout(30)
def test_old_key_files_and_bad_tokens_are_one_line_errors(tmp_path: Path) -> None:
    old = tmp_path / "old.keys"
    save_keys(generate_keys(), old)  # as `ostinato keys` wrote them before control tokens
    code, _, err = control("--url", "http://127.0.0.1:9", "--keys", str(old), "paused")
    assert code == 1
    assert f"{old}: missing field 'control_token'" in err
    short = tmp_path / "short.token"
    short.write_text("abc")
    code, _, err = control("--url", "http://127.0.0.1:9", "--control-token-file", str(short),
                           "paused")  # fmt: skip
    assert code == 1
    assert f"{short}: a control token has 16 to 1024 characters, this one 3" in err
    assert len(err.splitlines()) == 1


def _hub(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    return subprocess.Popen(
        [
            sys.executable, "-m", "ostinato", "hub", str(wf), "--bind", "tcp://127.0.0.1:0",
            "--http-host", "127.0.0.1", "--http-port", "0", "--state-dir", str(tmp_path / "s"),
            *extra,
        ],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.timeout(60)
def test_a_hub_with_keys_but_no_token_does_not_start(tmp_path: Path, runtime_dir: Path) -> None:
    old = tmp_path / "old.keys"
    keys = generate_keys()
    save_keys(keys, old)
    hub = _hub(tmp_path, "--keys", str(old))
    _, err = hub.communicate(timeout=WAIT)
    assert hub.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"ostinato hub: {old}: missing field 'control_token' (key files made before control "
        "tokens lack it: make a new set with 'ostinato keys', add the field, or give "
        "--control-token-file)"
    )
    text = keys.as_text()
    env = {var: text[name] for name, var in ENV_VARS.items()}
    hub = _hub(tmp_path, env=env)
    _, err = hub.communicate(timeout=WAIT)
    assert hub.returncode == 1
    assert f"environment variable {CONTROL_TOKEN_ENV}: missing beside the OSTINATO_CURVE_*" in err


@pytest.fixture
def keyed_hub(tmp_path: Path, runtime_dir: Path) -> Iterator[tuple[str, Path]]:
    keys = tmp_path / "wf.keys"
    assert main(["keys", "--out", str(keys)]) == 0
    hub = _hub(tmp_path, "--keys", str(keys))
    try:
        assert hub.stdout is not None
        assert hub.stdout.readline().startswith("hub listening on")
        line = hub.stdout.readline()
        assert line.endswith(f"(control token: {keys})\n"), line
        yield line.split(" on ")[1].split()[0], keys
    finally:
        stop(hub)
        if hub.stdout is not None:
            hub.stdout.close()
        if hub.stderr is not None:
            hub.stderr.close()


@pytest.mark.timeout(60)
def test_a_hub_takes_the_token_from_its_key_file(keyed_hub: tuple[str, Path]) -> None:
    url, keys = keyed_hub
    code, printed, _ = control("--url", url, "--keys", str(keys), "--loop", "other", "paused")
    assert (code, printed.split()) == (0, ["LOOP", "DESIRED", "beat", "running", "other", "paused"])


@pytest.mark.timeout(60)
def test_an_insecure_hub_makes_a_token_file_and_removes_it(
    tmp_path: Path, runtime_dir: Path
) -> None:
    hub = _hub(tmp_path, "--insecure", env={"XDG_RUNTIME_DIR": str(runtime_dir)})
    try:
        assert hub.stdout is not None
        assert hub.stdout.readline().startswith("hub listening on")
        line = hub.stdout.readline()
        path = Path(line.split("(control token: ")[1].split(" (new)")[0])
        assert path.parent == runtime_dir / "ostinato"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        url = line.split(" on ")[1].split()[0]
        code, _, err = control("--url", url, "--control-token-file", str(path), "paused")
        assert code == 0, err
    finally:
        assert stop(hub) == 0
        for stream in (hub.stdout, hub.stderr):
            if stream is not None:
                stream.close()
    assert not path.exists()
