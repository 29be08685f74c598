"""`ostinato run --metrics-port`: the server comes up with the workflow and goes with it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from ostinato._cli import main

from .conftest import get, wait_until

WORKFLOW = """\
apiVersion: ostinato.dev/v1alpha1
kind: Workflow
metadata: {name: clicheck}
spec:
  loops:
    - name: beat
      pool: thread
      producer: {name: tick, class: IntervalProducer, config: {periodSeconds: 0.02}}
      nodes:
        - {name: log, kind: blocking, class: LogSink, config: {level: DEBUG}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_metrics_until_it_stops(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "ostinato", "run", str(path), "--duration", "30"),
            *("--status-every", "0", "--metrics-port", str(port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def ready() -> bool:
            try:
                return get(url + "/readyz", timeout=2).code == 200
            except OSError:
                return proc.poll() is not None  # not listening yet, or it died: stop waiting

        assert wait_until(ready, timeout=20)
        assert proc.poll() is None, proc.communicate()
        body = get(url + "/metrics").body
        assert 'ostinato_iterations_total{loop="beat",workflow="clicheck"}' in body
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}" in err.decode()
    with pytest.raises(urllib.error.URLError, match="refused"):  # gone with the process
        get(url + "/healthz", timeout=2)


@pytest.mark.parametrize("port", ["-1", "65536", "x"])
def test_a_bad_metrics_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "wf.yaml", "--metrics-port", port])
    assert exc.value.code == 2
    assert "--metrics-port" in capsys.readouterr().err
