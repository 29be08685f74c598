"""The single-node cluster: control plane + node, recorded on disk so any run can tear it down."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from hack.k8s import binaries, debian, images, node, volumes
from hack.k8s._lock import LockBusyError, LockReenteredError, machine_lock
from hack.k8s._util import cmdline, start_process, stop_pids, tail, wait_until
from hack.k8s.controlplane import ControlPlane, _stale_registry
from hack.k8s.node import NodeSettings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

LOCK_PATH = Path("/run/lock/ostinato-cluster.lock")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Stop order: the node's agents and the controllers first, etcd last. containerd is
# stopped after its containers are deleted, the apiserver and etcd after the network is cleaned.
AGENTS = (
    "kubelet",
    "kube-proxy",
    "dns-loop",
    "volume-loop",
    "dnsmasq",
    "kube-scheduler",
    "kube-controller-manager",
)
STORE = ("kube-apiserver", "etcd")
# Directories made outside the configured ones at fixed paths: by the kubelet (pod logs, device
# plugins), the controller-manager (flex volumes), containerd 1.6 (shim sockets), CRI (netns
# mounts) and libcni (results cache). Removed at teardown when they were not there before.
FIXED_DIRS = (
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/var/lib/kubelet"),
    Path("/usr/libexec/kubernetes"),
    Path("/run/containerd"),
    Path("/run/netns"),
    Path("/var/lib/cni"),
)


class ClusterSettings(BaseModel):
    """Timeouts of the cluster's start and stop; all in seconds."""

    node: NodeSettings = Field(default_factory=NodeSettings)
    containerd_ready: float = Field(
        30.0, gt=0, description="seconds for containerd's socket to answer; ~1 s when idle"
    )
    node_ready: float = Field(
        180.0,
        gt=0,
        description="seconds from kubelet start to Node Ready; ~20 s here, the rest "
        "is room for a loaded 2-core machine",
    )
    stop_grace: float = Field(
        10.0,
        gt=0,
        description="seconds between SIGTERM and SIGKILL per group of daemons; they all stop "
        "in about 1 s, the apiserver may take longer",
    )
    lock_wait: float = Field(
        120.0,
        ge=0,
        description="seconds to wait for another process's cluster session to end before "
        "failing with its PID and command line; a session is a whole test run, so waiting "
        "longer would only hide two runs competing for one machine",
    )


class _NodeControlPlane(ControlPlane):
    """The control plane with the one apiserver flag a node needs: reach the kubelet (logs,
    exec) at its InternalIP, as the Node's name (`ostinato-node`) resolves nowhere."""

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "kube-apiserver":
            argv = [*argv, "--kubelet-preferred-address-types=InternalIP,Hostname"]
        super()._spawn(name, argv)


def why_unavailable() -> str | None:
    """One line saying why no cluster can run here, or None."""
    why = debian.why_impossible()
    return None if why is None else f"single-node cluster unavailable: {why}"


def locked(timeout: float = 120.0) -> contextlib.AbstractContextManager[None]:
    """Hold the machine-wide cluster lock (one cluster session at a time across processes).

    LockBusyError (a TimeoutError) names the holder when it is not free within `timeout` seconds;
    LockReenteredError when this process holds it already.
    """
    return machine_lock(LOCK_PATH, timeout=timeout, what="a cluster session")


class Cluster:
    """A single-node Kubernetes 1.20 cluster on this machine.

    Every process it starts and every kernel setting it changes is written to a state file
    first, so down() works from that file alone: after a crash, from another process, twice.
    Callers hold `locked()` around up()/down() (the CLI and the pytest fixture do).
    """

    def __init__(self, settings: ClusterSettings | None = None) -> None:
        self.settings = settings or ClusterSettings()
        self.node = self.settings.node
        self.state_file = self.node.state_dir / "state.json"
        self.control_plane: ControlPlane | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_file)

    def _update(self, **changes: Any) -> None:
        state = self._state()
        state.update(changes)
        self._save(state)

    def _spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = start_process(argv, self.node.logs / f"{name}.log", env)
        self._procs[name] = proc
        self._record(name, proc.pid, str(argv[0]))
        return proc

    def _record(self, name: str, pid: int, argv0: str) -> None:
        state = self._state()
        processes = [p for p in state.get("processes", []) if p["name"] != name]
        processes.append({"name": name, "pid": pid, "argv0": argv0})
        state["processes"] = processes
        self._save(state)

    def _running(self, names: Sequence[str] | None = None) -> dict[str, int]:
        """Recorded processes still running their recorded program (PIDs may be reused)."""
        found: dict[str, int] = {}
        for entry in self._state().get("processes", []):
            if names is not None and entry["name"] not in names:
                continue
            pid = int(entry["pid"])
            argv = cmdline(pid)
            if argv[:1] == [entry["argv0"]] and _not_zombie(pid):
                found[entry["name"]] = pid
        return found

    # -- health ----------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.state_file.exists()

    @property
    def kept(self) -> bool:
        """Started by `make cluster-up` to be reused; False for one a test session started
        (and, having crashed, never stopped): the next session adopts and stops that one."""
        return bool(self._state().get("keep", False))

    def healthy(self) -> bool:
        """Up (state says so), every daemon running, the apiserver ready, the Node Ready."""
        state = self._state()
        if state.get("phase") != "up":
            return False
        recorded = {p["name"] for p in state.get("processes", [])}
        if set(self._running()) != recorded:
            return False
        self.attach()
        result = self.kubectl(
            "get",
            "node",
            self.node.node_name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return result.returncode == 0 and result.stdout.strip() == "True"

    def attach(self) -> ControlPlane:
        """A ControlPlane handle on the recorded apiserver (kubectl, helm, clients; no stop)."""
        if self.control_plane is not None:
            return self.control_plane
        record = self._state().get("control_plane")
        if not record:
            raise RuntimeError(f"{self.state_file}: no control plane recorded (cluster not up)")
        plane = ControlPlane(Path(record["workdir"]), bind_address="0.0.0.0", with_scheduler=True)
        plane.server = record["server"]
        plane.token = record["token"]
        self.control_plane = plane
        return plane

    # -- up ----------------------------------------------------------------------------------

    def up(self, *, reuse: bool = True, keep: bool = False) -> bool:
        """Bring the cluster up; with `reuse`, keep a healthy one. True if this call started it.

        `keep` marks it as meant to outlive its starter (`make cluster-up`); see `kept`.
        """
        why = why_unavailable()
        if why is not None:
            raise binaries.Unavailable(why)
        if reuse and self.healthy():
            if keep:
                self._update(keep=True)
            return False
        if self.exists():
            self.down()
        debian.ensure_packages(debian.NODE_PACKAGES)
        paths = binaries.ensure(binaries.ALL)
        pause = images.ensure_pause()
        started = time.monotonic()
        self._save(
            {
                "phase": "starting",
                "keep": keep,
                "owner": os.getpid(),
                "sysctls": node.read_sysctls(),
                "created": [str(d) for d in FIXED_DIRS if not d.exists()],
                "processes": [],
            }
        )
        try:
            self._up(paths, pause)
        except BaseException:
            print(f"cluster start failed; logs in {self.node.logs}; tearing down", file=sys.stderr)
            with contextlib.suppress(Exception):
                _copy_logs(self.node.logs)
            self.down()
            raise
        self._update(phase="up", startup_seconds=round(time.monotonic() - started, 1))
        return True

    def _up(self, paths: dict[str, Path], pause: Path) -> None:
        settings = self.node
        node.write_configs(settings)
        node.prepare_network(settings)
        node.start_containerd(settings, self._spawn)
        wait_until(
            lambda: node.containerd_ready(settings),
            timeout=self.settings.containerd_ready,
            what="containerd",
            check=self._check_alive,
        )
        # A fresh cluster has no containers: anything here is left from a crashed one.
        node.remove_all_containers(settings)
        socket = settings.containerd_socket
        images.import_image(socket, pause, images.PAUSE_REF, images.pause_inputs())

        plane = _NodeControlPlane(
            settings.state_dir / "control-plane", bind_address="0.0.0.0", with_scheduler=True
        )
        self.control_plane = plane
        try:
            plane.start()
        finally:
            # The cluster outlives this process (make cluster-up): our state file, not the
            # control plane's atexit hook or its crash registry, decides when it stops.
            atexit.unregister(plane.stop)
            for entry in _stale_registry().glob(f"{os.getpid()}-{id(plane)}.pidfile"):
                entry.unlink(missing_ok=True)
            for name, proc in plane.processes.items():
                self._record(name, proc.pid, str(proc.args[0]))  # type: ignore[index]
                self._procs[name] = proc
        self._update(
            control_plane={
                "workdir": str(plane.workdir),
                "server": plane.server,
                "token": plane.token,
            }
        )
        kubeconfig = plane.kubeconfig
        wait_until(
            lambda: (
                True
                if plane.kubectl(
                    "apply", "-f", "-", input=node.dns_objects(settings), check=False
                ).returncode
                == 0
                else None
            ),
            timeout=60,
            what="the kube-dns Service",
            interval=0.5,
        )
        ip = node.node_ip()
        self._update(node_ip=ip)
        node.start_dns(settings, kubeconfig, self._spawn)
        # A default StorageClass, so durable Workflows get their hub's volume as on any cluster.
        plane.kubectl("apply", "-f", "-", input=json.dumps(volumes.storage_class()))
        node.start_volumes(settings, kubeconfig, self._spawn)
        node.start_kube_proxy(settings, kubeconfig, paths["kube-proxy"], self._spawn)
        node.start_kubelet(settings, kubeconfig, paths["kubelet"], ip, self._spawn)
        wait_until(
            self._node_ready,
            timeout=self.settings.node_ready,
            what=f"Node {settings.node_name} Ready",
            check=self._check_alive,
            interval=0.5,
        )
        wait_until(
            lambda: (
                True
                if plane.kubectl("get", "serviceaccount", "default", check=False).returncode == 0
                else None
            ),
            timeout=60,
            what="ServiceAccount default/default",
            check=self._check_alive,
        )

    def _node_ready(self) -> bool | None:
        assert self.control_plane is not None
        result = self.control_plane.kubectl(
            "get",
            "node",
            self.node.node_name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return True if result.stdout.strip() == "True" else None

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                log = self.node.logs / f"{name}.log"
                if not log.exists() and self.control_plane is not None:
                    log = self.control_plane.workdir / "logs" / f"{name}.log"
                raise RuntimeError(
                    f"{name} exited with status {proc.returncode}; last lines of {log}:\n"
                    + tail(log)
                )

    # -- down --------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop and remove everything the state file records, and the network and mounts the
        node leaves behind. Idempotent; works after a crash. Returns what it had to remove."""
        settings = self.node
        state = self._state()
        removed: list[str] = []
        grace = self.settings.stop_grace

        def stop(names: Sequence[str]) -> None:
            running = self._running(names)
            removed.extend(f"process {n} ({pid})" for n, pid in running.items())
            stop_pids(list(running.values()), grace)
            for name in running:
                proc = self._procs.pop(name, None)
                if proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=1)

        stop(AGENTS)
        if self._running(["containerd"]):
            count = node.remove_all_containers(settings)
            removed.extend([f"{count} containers"] if count else [])
        stop(["containerd"])
        shims = node.shim_pids(settings)
        removed.extend(f"shim {pid}" for pid in shims)
        stop_pids(shims, grace)
        node.kill_pod_processes()
        with contextlib.suppress(binaries.Unavailable):
            proxy = binaries.ensure(["kube-proxy"], build=False)["kube-proxy"]
            settings.logs.mkdir(parents=True, exist_ok=True)
            node.kube_proxy_cleanup(proxy, settings.logs / "kube-proxy-cleanup.log")
        netns = node.list_cni_netns()
        removed.extend(f"netns {n}" for n in netns)
        node.remove_network(settings)
        stop(STORE)
        mounts = node.mounts_under([settings.state_dir, settings.run_dir])
        removed.extend(f"mount {m}" for m in mounts)
        node.unmount_under([settings.state_dir, settings.run_dir])
        left = node.remove_kubepods_cgroups()
        removed.extend(f"cgroup left: {p}" for p in left)
        if state.get("sysctls"):
            node.write_sysctls(state["sysctls"])
        for directory in state.get("created", []):
            shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(settings.run_dir, ignore_errors=True)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        self.control_plane = None
        self._procs.clear()
        return removed

    # -- using it ----------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.attach().kubeconfig

    @property
    def server(self) -> str:
        return self.attach().server

    @property
    def containerd_socket(self) -> Path:
        return self.node.containerd_socket

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        return self.attach().api_client(kubeconfig)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.attach().kubectl(*args, input=input, check=check, kubeconfig=kubeconfig)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.attach().helm(*args, input=input, check=check, kubeconfig=kubeconfig)

    def kubeconfig_for_service_account(self, namespace: str, name: str) -> Path:
        return self.attach().kubeconfig_for_service_account(namespace, name)

    def ensure_image(self, repo: Path = REPO_ROOT) -> str:
        """Build (when its inputs changed) and import the project's image; its reference."""
        archive, inputs = images.ensure_project_image(repo)
        images.import_image(self.containerd_socket, archive, images.IMAGE_REF, inputs)
        return images.IMAGE_REF

    def memory(self) -> dict[str, int]:
        """Resident bytes: the daemons (RSS), the shims, and the pods (kubepods total_rss)."""
        daemons = sum(_rss(pid) for pid in self._running().values())
        shims = sum(_rss(pid) for pid in node.shim_pids(self.node))
        pods = 0
        stat = Path("/sys/fs/cgroup/memory/kubepods/memory.stat")
        with contextlib.suppress(OSError, ValueError):
            for line in stat.read_text().splitlines():
                if line.startswith("total_rss "):
                    pods = int(line.split()[1])
        return {"daemons": daemons, "shims": shims, "pods": pods}


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _copy_logs(logs: Path) -> None:
    """Keep the logs of a failed start where teardown will not remove them."""
    target = binaries.cache_root() / "cluster-logs" / time.strftime("%Y%m%dT%H%M%S")
    shutil.copytree(logs, target)
    print(f"logs of the failed start kept in {target}", file=sys.stderr)


@contextlib.contextmanager
def containerd_for_import(settings: ClusterSettings | None = None) -> Iterator[Path]:
    """The running cluster's containerd, or one started just for an import and then stopped."""
    cluster = Cluster(settings)
    if cluster._running(["containerd"]) and node.containerd_ready(cluster.node):
        yield cluster.containerd_socket
        return
    with locked(cluster.settings.lock_wait):
        if cluster._running(["containerd"]) and node.containerd_ready(cluster.node):
            yield cluster.containerd_socket
            return
        if cluster.exists():
            cluster.down()
        cluster._save({"phase": "import", "owner": os.getpid(), "processes": []})
        try:
            node.write_configs(cluster.node)
            node.start_containerd(cluster.node, cluster._spawn)
            wait_until(
                lambda: node.containerd_ready(cluster.node),
                timeout=cluster.settings.containerd_ready,
                what="containerd",
                check=cluster._check_alive,
            )
            yield cluster.containerd_socket
        finally:
            cluster.down()


# -- command line --------------------------------------------------------------------------


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="tear down a running cluster first instead of keeping it",
    )
    parser.add_argument(
        "--no-image", action="store_true", help="do not build/import localhost/ostinato:dev"
    )


def up_main(args: argparse.Namespace) -> int:
    why = why_unavailable()
    if why is not None:
        print(why)
        return 1
    cluster = Cluster()
    try:
        with locked(cluster.settings.lock_wait):
            started = time.monotonic()
            brought_up = cluster.up(reuse=not args.fresh, keep=True)
            took = time.monotonic() - started
            print(f"cluster {'up' if brought_up else 'already up'} in {took:.1f} s")
            if not args.no_image:
                ref = cluster.ensure_image()
                print(f"{ref} in containerd after {time.monotonic() - started:.1f} s")
    except (binaries.Unavailable, LockBusyError, LockReenteredError) as exc:
        print(exc)
        return 1
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    memory = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in cluster.memory().items())
    print(f"resident memory: {memory}; `make cluster-down` stops it")
    return 0


def add_down_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options: teardown always removes everything


def down_main(args: argparse.Namespace) -> int:
    del args
    cluster = Cluster()
    try:
        with locked(cluster.settings.lock_wait):
            started = time.monotonic()
            existed = cluster.exists()
            removed = cluster.down()
    except (LockBusyError, LockReenteredError) as exc:
        print(exc)
        return 1
    for item in removed:
        print(f"removed {item}")
    if not existed and not removed:
        print("no cluster here: nothing to remove")
    else:
        print(f"cluster down in {time.monotonic() - started:.1f} s")
    leftovers = residue(cluster.node)
    for item in leftovers:
        print(f"LEFT BEHIND: {item}")
    return 1 if leftovers else 0


def residue(settings: NodeSettings) -> list[str]:
    """What a torn-down cluster must not leave: processes, mounts, netns, bridge, chains."""
    left: list[str] = []
    programs = (
        *("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"),
        *("kube-proxy", "containerd", "dnsmasq", "etcd", "hack.k8s.dnsloop", "hack.k8s.volumes"),
    )
    needles = (str(settings.containerd_socket), str(settings.state_dir), str(settings.run_dir))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = cmdline(int(entry.name))
            joined = " ".join(argv)
            if argv and any(n in joined for n in needles) and any(p in joined for p in programs):
                left.append(f"process {entry.name}: {joined[:120]}")
    left += [f"mount {m}" for m in node.mounts_under([settings.state_dir, settings.run_dir])]
    left += [f"netns {n}" for n in node.list_cni_netns()]
    if node.bridge_exists(settings):
        left.append(f"bridge {settings.bridge}")
    left += [f"chain {chain}" for chain in node.list_chains()]
    left += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/kubepods")]
    return left


def add_image_local_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="build the archives but do not import them into containerd",
    )


def image_local_main(args: argparse.Namespace) -> int:
    """`make image-local`: build the project's image and the pause image, import both."""
    started = time.monotonic()
    try:
        pause = images.ensure_pause()
        archive, inputs = images.ensure_project_image()
    except binaries.Unavailable as exc:
        print(exc)
        return 1
    built = time.monotonic() - started
    print(
        f"{images.IMAGE_REF}: {archive} ({archive.stat().st_size // 2**20} MiB), built/checked in "
        f"{built:.1f} s"
    )
    if args.build_only:
        return 0
    with containerd_for_import() as address:
        images.import_image(address, pause, images.PAUSE_REF, images.pause_inputs())
        fresh = images.import_image(address, archive, images.IMAGE_REF, inputs)
    print(
        f"{images.IMAGE_REF} {'imported into' if fresh else 'already in'} containerd (k8s.io) "
        f"in {time.monotonic() - started:.1f} s total"
    )
    return 0
