"""A real Kubernetes control plane (etcd, kube-apiserver, controller-manager) for operator tests."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, Field

from hack.k8s import binaries
from hack.k8s._util import (
    free_port,
    stale_pids,
    start_process,
    stop_pids,
    tail,
    wait_until,
    write_pid_file,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

SERVICE_CIDR = "10.0.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
PID_FILE = "pids.json"


class Timeouts(BaseModel):
    """How long to wait for the control plane; all in seconds."""

    ready: float = Field(
        90.0,
        gt=0,
        description="seconds for /readyz to answer ok; ~2 s when idle, 90 s leaves room for a "
        "loaded 2-core machine (a parallel Go build) without hiding a hung start",
    )
    stop_grace: float = Field(
        10.0,
        gt=0,
        description="seconds between SIGTERM and SIGKILL; the apiserver may ignore SIGTERM for "
        "a while, and 10 s keeps teardown quick",
    )
    command: float = Field(
        120.0,
        gt=0,
        description="seconds a kubectl/helm call may take; helm installs wait for rollouts",
    )
    token: float = Field(
        30.0, gt=0, description="seconds to wait for a ServiceAccount to exist before its token"
    )


class CommandError(subprocess.CalledProcessError):
    """A kubectl/helm call failed; str() includes its stderr, which is what one needs to read."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.output}"


def _stale_registry() -> Path:
    return binaries.cache_root() / "run"


def cleanup_stale() -> int:
    """Stop processes of control planes whose owner died (a crash); return how many were stopped."""
    registry = _stale_registry()
    stopped = 0
    for entry in sorted(registry.glob("*.pidfile")) if registry.is_dir() else []:
        try:
            pid_file = Path(entry.read_text().strip())
        except OSError:
            continue
        pids = stale_pids(pid_file)
        if pids is None:
            continue  # its owner still runs: not ours to touch
        stop_pids(pids, grace=5.0)
        stopped += len(pids)
        with contextlib.suppress(OSError):
            entry.unlink()
        with contextlib.suppress(OSError):
            pid_file.unlink()
    return stopped


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager (+ kube-scheduler) on free ports.

    Token auth (an admin token in tokens.csv), RBAC, service-account signing keys; everything
    lives under `workdir`, which stop() removes. Use as a context manager or start()/stop().
    """

    def __init__(
        self,
        workdir: Path,
        bind_address: str = "127.0.0.1",
        with_scheduler: bool = False,
        *,
        with_controller_manager: bool = True,
        keep_workdir: bool = False,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.bind_address = bind_address
        self.with_scheduler = with_scheduler
        self.with_controller_manager = with_controller_manager
        self.keep_workdir = keep_workdir
        self.timeouts = timeouts or Timeouts()
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.server = ""
        self.token = ""
        self.binaries: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and return once /readyz answers ok (binaries.Unavailable if none)."""
        names = ["etcd", "kube-apiserver", "kubectl"]
        if self.with_controller_manager:
            names.append("kube-controller-manager")
        if self.with_scheduler:
            names.append("kube-scheduler")
        self.binaries = binaries.ensure(names)
        cleanup_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._cleanup_own_stale()
        atexit.register(self.stop)
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _cleanup_own_stale(self) -> None:
        pids = stale_pids(self.workdir / PID_FILE)
        if pids is None:
            raise RuntimeError(f"workdir {self.workdir}: a running control plane already uses it")
        stop_pids(pids, self.timeouts.stop_grace)
        for stale in ("etcd", "certs", "logs", "kcm-certs", "scheduler-certs"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)

    def _start(self) -> None:
        work = self.workdir
        for sub in ("certs", "logs", "kcm-certs", "scheduler-certs"):
            (work / sub).mkdir(exist_ok=True)
        self.token = secrets.token_hex(16)
        (work / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n")
        (work / "tokens.csv").chmod(0o600)
        self._make_service_account_keys()
        # Register where the pid file lives, so a crashed run is cleaned up by the next one.
        registry = _stale_registry()
        registry.mkdir(parents=True, exist_ok=True)
        (registry / f"{os.getpid()}-{id(self)}.pidfile").write_text(str(work / PID_FILE))

        loopback = "127.0.0.1"
        etcd_port, peer_port = free_port(loopback), free_port(loopback)
        etcd_url = f"http://{loopback}:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://{loopback}:{peer_port}",
                f"--initial-advertise-peer-urls=http://{loopback}:{peer_port}",
                f"--initial-cluster=default=http://{loopback}:{peer_port}",
                "--log-level=warn",
            ],
        )
        api_port = free_port(self.bind_address)
        self.server = f"https://127.0.0.1:{api_port}"
        authorization = "RBAC" if self.bind_address == loopback else "Node,RBAC"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={work / 'certs'}",
                f"--secure-port={api_port}",
                f"--bind-address={self.bind_address}",
                f"--token-auth-file={work / 'tokens.csv'}",
                f"--authorization-mode={authorization}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={work / 'sa.pub'}",
                f"--service-account-signing-key-file={work / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--v=1",
                *self._insecure_port_off("kube-apiserver", "--insecure-port=0"),
            ],
        )
        self._write_kubeconfig(self.kubeconfig, "admin", self.token)
        wait_until(
            self._ready,
            timeout=self.timeouts.ready,
            what=f"kube-apiserver {self.server}/readyz",
            check=self._check_alive,
        )
        if self.with_controller_manager:
            self._spawn(
                "kube-controller-manager",
                [
                    str(self.binaries["kube-controller-manager"]),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--authentication-kubeconfig={self.kubeconfig}",
                    f"--authorization-kubeconfig={self.kubeconfig}",
                    f"--service-account-private-key-file={work / 'sa.key'}",
                    f"--root-ca-file={work / 'certs' / 'apiserver.crt'}",
                    "--use-service-account-credentials=true",
                    "--controllers=*",
                    f"--cluster-cidr={CLUSTER_CIDR}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--leader-elect=false",
                    *self._insecure_port_off("kube-controller-manager", "--port=0"),
                    f"--secure-port={free_port(loopback)}",
                    f"--bind-address={loopback}",
                    f"--cert-dir={work / 'kcm-certs'}",
                    # Its default, /usr/libexec/kubernetes/..., would be created on the machine
                    # and outlive the control plane.
                    f"--flex-volume-plugin-dir={work / 'flexvolume'}",
                ],
            )
        if self.with_scheduler:
            self._spawn(
                "kube-scheduler",
                [
                    str(self.binaries["kube-scheduler"]),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--authentication-kubeconfig={self.kubeconfig}",
                    f"--authorization-kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    *self._insecure_port_off("kube-scheduler", "--port=0"),
                    f"--secure-port={free_port(loopback)}",
                    f"--bind-address={loopback}",
                    f"--cert-dir={work / 'scheduler-certs'}",
                ],
            )
        self._check_alive()

    def _insecure_port_off(self, name: str, flag: str) -> list[str]:
        """`flag` for releases that still have an insecure port (before 1.24, when it went)."""
        result = subprocess.run(
            [str(self.binaries[name]), "--version"], capture_output=True, text=True, check=False
        )
        match = re.search(r"v1\.(\d+)\.", result.stdout)
        return [flag] if match is None or int(match.group(1)) < 24 else []

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.processes[name] = start_process(argv, self.workdir / "logs" / f"{name}.log")
        write_pid_file(self.workdir / PID_FILE, os.getpid(), self.processes)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                log = self.workdir / "logs" / f"{name}.log"
                raise RuntimeError(
                    f"{name} exited with status {proc.returncode}; last lines of {log}:\n"
                    + tail(log)
                )

    def _ready(self) -> bool | None:
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return True if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def _make_service_account_keys(self) -> None:
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
            check=True,
            capture_output=True,
        )

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ostinato-test",
                    "cluster": {"server": self.server, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {"name": user, "context": {"cluster": "ostinato-test", "user": user}},
            ],
            "current-context": user,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def detach(self) -> None:
        """Let the processes outlive this Python process (`make cluster-up`): no atexit stop,
        no crash-registry entry; whoever detaches must record the PIDs and stop them later."""
        atexit.unregister(self.stop)
        for entry in _stale_registry().glob(f"{os.getpid()}-{id(self)}.pidfile"):
            entry.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop every process by PID (SIGTERM, then SIGKILL) and remove the workdir. Idempotent."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            atexit.unregister(self.stop)
            # Controllers first, then the apiserver, etcd last: each stops while what it talks
            # to is still there, instead of logging retries through its whole shutdown.
            stages = [
                [p for n, p in self.processes.items() if n not in ("kube-apiserver", "etcd")],
                [p for n, p in self.processes.items() if n == "kube-apiserver"],
                [p for n, p in self.processes.items() if n == "etcd"],
            ]
            # Ignore Ctrl-C while stopping, so an impatient second one cannot orphan etcd.
            previous = None
            if threading.current_thread() is threading.main_thread():
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                for stage in stages:
                    stop_pids([p.pid for p in stage], self.timeouts.stop_grace)
                    for proc in stage:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=1)
                self.processes.clear()
                for entry in _stale_registry().glob(f"{os.getpid()}-{id(self)}.pidfile"):
                    entry.unlink()
                if self.keep_workdir:
                    (self.workdir / PID_FILE).unlink(missing_ok=True)
                else:
                    shutil.rmtree(self.workdir, ignore_errors=True)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)

    # -- clients ---------------------------------------------------------------------------

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A kubernetes.client.ApiClient for the admin (or the given kubeconfig's) identity."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return client

    def _tool(
        self,
        tool: str,
        args: tuple[str, ...],
        input: str | None,
        check: bool,
        kubeconfig: Path | None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            str(binaries.ensure([tool])[tool]),
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
        ]
        argv.extend(args)
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=self.timeouts.command,
            env=env,
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; CommandError (with stderr) when check fails."""
        return self._tool("kubectl", args, input, check, kubeconfig)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane, with its caches inside the workdir."""
        helm_home = self.workdir / "helm"
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }
        return self._tool("helm", args, input, check, kubeconfig, env)

    def kubeconfig_for_service_account(self, namespace: str, name: str) -> Path:
        """A kubeconfig carrying a token of ServiceAccount `namespace/name` (TokenRequest API)."""
        from kubernetes.client import (
            AuthenticationV1TokenRequest,
            CoreV1Api,
            V1TokenRequestSpec,
        )
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as client:
            core = CoreV1Api(client)

            def exists() -> bool | None:
                try:
                    core.read_namespaced_service_account(name, namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise
                return True

            wait_until(
                exists, timeout=self.timeouts.token, what=f"ServiceAccount {namespace}/{name}"
            )
            request = AuthenticationV1TokenRequest(
                spec=V1TokenRequestSpec(audiences=[], expiration_seconds=24 * 3600)
            )
            answer: Any = core.create_namespaced_service_account_token(name, namespace, request)
        path = self.workdir / "kubeconfigs" / f"{namespace}.{name}.kubeconfig"
        self._write_kubeconfig(
            path, f"system:serviceaccount:{namespace}:{name}", answer.status.token
        )
        return path


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, required=True, help="state directory (removed)")
    parser.add_argument(
        "--bind-address", default="127.0.0.1", help="kube-apiserver address (0.0.0.0 for pods)"
    )
    parser.add_argument("--with-scheduler", action="store_true", help="also run kube-scheduler")


def cli_main(args: argparse.Namespace) -> int:
    plane = ControlPlane(args.workdir, args.bind_address, args.with_scheduler)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    # Everything after start() is inside the try: a Ctrl-C at any moment still stops cleanly.
    try:
        plane.start()
        print(f"control plane ready: {plane.server}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print("Ctrl-C stops it.", flush=True)
        while not stopped.wait(1.0):
            plane._check_alive()
    except binaries.Unavailable as exc:
        print(exc)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()
    print("stopped", file=sys.stderr)
    return 0
