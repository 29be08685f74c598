"""The soak without a cluster: ``ostinato run`` with process loops whose children are SIGKILLed,
and distributed mode (``ostinato hub`` + ``ostinato loop`` processes, this module their
supervisor) where loop processes and the hub itself are killed and started again, the hub on
its kept state directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ._http import http_json, ready
from .chaos import Fault, Planned, log
from .runner import RunSettings, SoakError
from .workload import document, loop_replicas

__all__ = ["DistributedHost", "RunHost"]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Seconds a supervised process waits before it is started again (distributed mode).
RESTART_DELAY_SECONDS = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    # The workload's nodes (soak.nodes) import from the repository's root.
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _units(settings: RunSettings) -> list[str]:
    return [
        f"{loop}/{replica}"
        for loop, n in loop_replicas(settings.workload).items()
        for replica in range(n)
    ]


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_workflow(out: Path, settings: RunSettings, records: Path, pool: str) -> Path:
    workload = settings.workload.model_copy(update={"pool": pool})
    path = out / "workflow.yaml"
    path.write_text(yaml.safe_dump(document(workload, str(records)), sort_keys=False))
    return path


class RunHost:
    """``ostinato run`` of the workload with process loops; faults SIGKILL a loop's child."""

    name = "local-run"
    description = (
        "`ostinato run` on this machine: the hub inside the orchestrator (ipc://), every loop a "
        "process the orchestrator restarts; faults SIGKILL a random loop process."
    )

    def __init__(self, out: Path, settings: RunSettings) -> None:
        self.out = out
        self.settings = settings
        self.records_dir = out / "records"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = out / "control.token"
        self.proc: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.token_file.unlink(missing_ok=True)  # a new token, written by `ostinato run`
        workflow = _write_workflow(self.out, self.settings, self.records_dir, "process")
        argv = [
            *(sys.executable, "-m", "ostinato", "run", str(workflow)),
            *("--state-dir", str(self.out / "state"), "--metrics-port", str(self.port)),
            *("--live", "never", "--status-every", "0"),
            *("--control-token-file", str(self.token_file)),
        ]
        with (self.out / "ostinato-run.log").open("ab") as output:
            self.proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=_env(), stdout=output, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 60
            while not ready(f"{self.url}/readyz"):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SoakError(f"ostinato run did not serve {self.url}; see its log")
                time.sleep(0.2)
            yield
        finally:
            _stop(self.proc, 60)

    def _loops(self) -> list[dict[str, Any]]:
        loops: list[dict[str, Any]] = http_json(f"{self.url}/status")["loops"]
        return loops

    def _pid(self, unit: str) -> tuple[int | None, str | None]:
        loop, replica = unit.split("/")
        for entry in self._loops():
            if entry["name"] == loop and int(entry.get("replica", 0)) == int(replica):
                return entry.get("pid"), entry.get("state")
        raise KeyError(unit)

    def loop_targets(self) -> list[str]:
        return _units(self.settings)

    def fault_hows(self) -> tuple[list[str], str, str | None]:
        return ["SIGKILL"], "none", None

    def inject(self, planned: Planned) -> Fault:
        if planned.kind != "loop":
            raise ValueError(f"{self.name} has no {planned.kind} to hit")
        pid, _ = self._pid(planned.target)
        if pid is None:
            raise RuntimeError(f"{planned.target} has no process now")
        os.kill(pid, signal.SIGKILL)
        loop = planned.target.split("/")[0]
        return Fault(
            kind="loop", target=planned.target, how="SIGKILL", loop=loop, at=time.time(),
            old=str(pid),
        )  # fmt: skip

    def replaced(self, fault: Fault) -> Fault | None:
        pid, state = self._pid(fault.target)
        if pid is None or str(pid) == fault.old or state != "running":
            return None
        return fault.model_copy(
            update={"replaced_at": time.time(), "new": str(pid), "match_pid": pid}
        )

    def processes(self) -> dict[str, tuple[str, list[int]]]:
        assert self.proc is not None
        # The hub runs inside the orchestrator's process.
        found = {"hub": (str(self.proc.pid), [self.proc.pid])}
        for entry in self._loops():
            pid = entry.get("pid")
            if pid:
                found[f"{entry['name']}-{entry.get('replica', 0)}"] = (str(pid), [pid])
        return found

    def stop_writers(self) -> None:
        token = self.token_file.read_text().strip()
        http_json(f"{self.url}/control", {"loop": "writer", "state": "paused"}, token=token)

    def queue_depths(self) -> dict[str, int]:
        queues = http_json(f"{self.url}/status")["queues"]
        return {q["name"]: int(q["depth"]) for q in queues}

    def notes(self) -> list[str]:
        return []


class _Supervised:
    """One process of distributed mode, started again whenever it dies (until stopped)."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as output:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO_ROOT, env=_env(), stdout=output, stderr=subprocess.STDOUT
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None


class DistributedHost:
    """``ostinato hub`` and one ``ostinato loop`` per replica over tcp:// with CURVE; faults
    SIGKILL a loop process or the hub, which this host then starts again (the hub on the same
    port and state directory), as systemd would."""

    name = "local-distributed"
    description = (
        "Distributed mode on this machine: `ostinato hub` (durable queues in its --state-dir) "
        "and an `ostinato loop` process per replica over tcp:// with CURVE, restarted when they "
        "end; faults SIGKILL or SIGTERM (a graceful stop) a random loop process, and SIGKILL "
        "the hub twice."
    )

    def __init__(self, out: Path, settings: RunSettings) -> None:
        self.out = out
        self.settings = settings
        self.records_dir = out / "records"
        self.hub_port, self.hub_http = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.hub_http}"
        self.units: dict[str, _Supervised] = {}
        self.http: dict[str, int] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        workflow = str(_write_workflow(self.out, self.settings, self.records_dir, "thread"))
        keys = self.out / "workflow.keys"
        keys.unlink(missing_ok=True)
        subprocess.run(
            [sys.executable, "-m", "ostinato", "keys", "--out", str(keys)], check=True, env=_env()
        )
        ostinato = [sys.executable, "-m", "ostinato"]
        self.units["hub"] = _Supervised(
            "hub",
            [
                *ostinato, "hub", workflow, "--bind", f"tcp://127.0.0.1:{self.hub_port}",
                "--keys", str(keys), "--state-dir", str(self.out / "state"),
                "--http-port", str(self.hub_http), "--http-host", "127.0.0.1",
            ],
            self.out / "logs" / "hub.log",
        )  # fmt: skip
        for key in _units(self.settings):
            loop, replica = key.split("/")
            self.http[key] = port = free_port()
            self.units[key] = _Supervised(
                key,
                [
                    *ostinato, "loop", workflow, "--loop", loop, "--replica", replica,
                    "--hub", f"tcp://127.0.0.1:{self.hub_port}", "--keys", str(keys),
                    "--http-port", str(port), "--http-host", "127.0.0.1",
                ],
                self.out / "logs" / f"{loop}-{replica}.log",
            )  # fmt: skip
        supervisor = threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True)
        try:
            self.units["hub"].start()
            deadline = time.monotonic() + 60
            while not ready(f"{self.url}/readyz"):
                if time.monotonic() > deadline:
                    raise SoakError("ostinato hub did not get ready; see logs/hub.log")
                time.sleep(0.2)
            for name, unit in self.units.items():
                if name != "hub":
                    unit.start()
            supervisor.start()
            yield
        finally:
            self._stopping.set()
            if supervisor.is_alive():
                supervisor.join()
            for name, unit in self.units.items():
                if name != "hub" and unit.proc is not None:
                    unit.proc.send_signal(signal.SIGTERM)
            for name, unit in self.units.items():
                if name != "hub" and unit.proc is not None:
                    _stop(unit.proc, 30)
            hub = self.units["hub"].proc
            if hub is not None:
                _stop(hub, 30)

    def _supervise(self) -> None:
        while not self._stopping.wait(0.1):
            for unit in self.units.values():
                proc = unit.proc
                if proc is not None and proc.poll() is not None:
                    log(f"{self.name}: {unit.name} exited ({proc.returncode}); starting it again")
                    if self._stopping.wait(RESTART_DELAY_SECONDS):
                        return
                    with self._lock:
                        unit.start()

    def loop_targets(self) -> list[str]:
        return _units(self.settings)

    def fault_hows(self) -> tuple[list[str], str, str | None]:
        # SIGTERM: the loop stops gracefully (and exits 0), as a pod deleted with grace does.
        return ["SIGKILL", "SIGTERM"], "SIGKILL", None

    def inject(self, planned: Planned) -> Fault:
        if planned.kind == "operator":
            raise ValueError(f"{self.name} has no operator")
        unit = self.units[planned.target]
        with self._lock:
            pid = unit.pid
            if pid is None:
                raise RuntimeError(f"{planned.target} has no process now")
            os.kill(pid, signal.Signals[planned.how])
        loop = None if planned.kind == "hub" else planned.target.split("/")[0]
        return Fault(
            kind=planned.kind, target=planned.target, how=planned.how, loop=loop, at=time.time(),
            old=str(pid),
        )  # fmt: skip

    def replaced(self, fault: Fault) -> Fault | None:
        unit = self.units[fault.target]
        pid = unit.pid
        if pid is None or str(pid) == fault.old:
            return None
        url = self.url if fault.kind == "hub" else f"http://127.0.0.1:{self.http[fault.target]}"
        if not ready(f"{url}/readyz"):
            return None
        return fault.model_copy(
            update={"replaced_at": time.time(), "new": str(pid), "match_pid": pid}
        )

    def processes(self) -> dict[str, tuple[str, list[int]]]:
        found = {}
        for name, unit in self.units.items():
            pid = unit.pid
            if pid is not None:
                found[name.replace("/", "-")] = (str(pid), [pid])
        return found

    def stop_writers(self) -> None:
        # The hub's control token is the key file's (ostinato keys writes it there).
        token = json.loads((self.out / "workflow.keys").read_text())["control_token"]
        http_json(f"{self.url}/control", {"loop": "writer", "state": "paused"}, token=token)

    def queue_depths(self) -> dict[str, int]:
        queues = http_json(f"{self.url}/status")["queues"]
        return {q["name"]: int(q["depth"]) for q in queues}

    def notes(self) -> list[str]:
        return []
