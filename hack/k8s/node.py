"""The node of the single-node cluster: containerd, the CNI bridge, kubelet, kube-proxy and DNS."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from hack.k8s import binaries
from hack.k8s.images import PAUSE_REF

# Starts a daemon under a name, records its PID, and returns it (cluster.py owns the records).
Spawn = Callable[[str, Sequence[str]], "subprocess.Popen[bytes]"]

# Kernel settings the node changes (CNI and kube-proxy need the first ones; kubelet sets the
# vm/kernel ones itself): their values before start-up are saved and restored at teardown.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# iptables chains the node's parts create: kube-proxy and kubelet (KUBE-*), the CNI plugins
# (CNI-*), and our own egress guard. Teardown removes every one of them and the jumps to them.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "OSTINATO-")
EGRESS_CHAIN = "OSTINATO-EGRESS"
CNI_BIN_DIR = Path("/usr/lib/cni")


class NodeSettings(BaseModel):
    """Where the node keeps its state and how its network is laid out."""

    state_dir: Path = Field(
        Path("/var/lib/ostinato-cluster"),
        description="logs, kubelet root, control-plane workdir, state file; removed at teardown "
        "(on disk, not /run, so the logs of a failed start survive for reading)",
    )
    run_dir: Path = Field(
        Path("/run/ostinato-cluster"),
        description="containerd's and runc's runtime state and sockets (tmpfs, as /run/containerd)",
    )
    node_name: str = Field("ostinato-node", description="the Node object's name")
    bridge: str = Field("cni0", description="the CNI bridge")
    pod_subnet: str = Field("10.244.0.0/24", description="this node's pod CIDR")
    gateway: str = Field(
        "10.244.0.1", description="the bridge's address: pods' gateway and the DNS server"
    )
    cluster_cidr: str = Field("10.244.0.0/16", description="all pods (kube-proxy)")
    dns_service_ip: str = Field("10.0.0.10", description="the kube-dns Service's ClusterIP")
    cluster_domain: str = Field("cluster.local", description="the cluster's DNS domain")
    dns_refresh: float = Field(
        2.0, gt=0, description="seconds between DNS hosts refreshes (every 2 s)"
    )

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        """Kept across clusters (under the cache), so imported images survive a teardown."""
        return binaries.cache_root() / "containerd"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"


def node_ip() -> str:
    """The address of the interface that carries the default route (the Node's InternalIP)."""
    routes = json.loads(_out(["ip", "-j", "-4", "route", "show", "default"]) or "[]")
    devices = [r["dev"] for r in routes if "dev" in r]
    for device in devices:
        for link in json.loads(_out(["ip", "-j", "-4", "addr", "show", "dev", device]) or "[]"):
            for addr in link.get("addr_info", []):
                if addr.get("family") == "inet" and addr.get("scope") == "global":
                    return str(addr["local"])
    raise RuntimeError("node_ip: no IPv4 address on the default route's interface")


def _out(argv: Sequence[str], check: bool = True) -> str:
    """The command's output. A program that is not installed has nothing to say ("") unless
    `check`: teardown and residue checks run on machines that never had a cluster."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        if check:
            raise RuntimeError(
                f"`{argv[0]}` is not installed (needed for: {' '.join(argv)})"
            ) from None
        return ""
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {result.returncode}: {result.stderr}")
    return result.stdout


def _quiet(argv: Sequence[str]) -> bool:
    """True when the command succeeded; False when it failed or its program is not installed."""
    try:
        return subprocess.run(list(argv), capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


# -- kernel settings ---------------------------------------------------------------------


def read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key).read_text().strip()
    return values


def write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value + "\n")


# -- network -----------------------------------------------------------------------------


def cni_config(settings: NodeSettings) -> dict[str, object]:
    """bridge on cni0 with host-local IPAM (its state in run_dir) and portmap."""
    return {
        "cniVersion": "0.4.0",
        "name": "ostinato",
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.bridge,
                "isGateway": True,
                "hairpinMode": True,
                # No masquerading: pod traffic has nowhere to go but this machine.
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": settings.pod_subnet, "gateway": settings.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(settings.run_dir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def prepare_network(settings: NodeSettings) -> None:
    """sysctls, the bridge with its gateway address (DNS listens there before any pod exists),
    and a guard that rejects pod traffic bound anywhere but this machine."""
    write_sysctls(
        {
            "net/ipv4/ip_forward": "1",
            "net/bridge/bridge-nf-call-iptables": "1",
            "net/bridge/bridge-nf-call-ip6tables": "1",
        }
    )
    if not _quiet(["ip", "link", "show", settings.bridge]):
        _out(["ip", "link", "add", settings.bridge, "type", "bridge"])
    prefix = settings.pod_subnet.split("/")[1]
    addresses = _out(["ip", "-4", "-o", "addr", "show", "dev", settings.bridge])
    if f" {settings.gateway}/" not in addresses:
        _out(["ip", "addr", "add", f"{settings.gateway}/{prefix}", "dev", settings.bridge])
    _out(["ip", "link", "set", settings.bridge, "up"])
    # Forwarded packets from the bridge may only go back into the bridge (pod to pod, also
    # after a Service DNAT); anything routed out of the machine is refused.
    _quiet(["iptables", "-N", EGRESS_CHAIN])
    _out(["iptables", "-F", EGRESS_CHAIN])
    _out(["iptables", "-A", EGRESS_CHAIN, "-o", settings.bridge, "-j", "RETURN"])
    _out(["iptables", "-A", EGRESS_CHAIN, "-j", "REJECT"])
    jump = ["FORWARD", "-i", settings.bridge, "-j", EGRESS_CHAIN]
    if not _quiet(["iptables", "-C", *jump]):
        _out(["iptables", "-I", *jump])


def bridge_exists(settings: NodeSettings) -> bool:
    return _quiet(["ip", "link", "show", settings.bridge])


def list_chains(prefixes: Sequence[str] = CHAIN_PREFIXES) -> list[str]:
    """'tool/table/chain' for every iptables/ip6tables chain named with `prefixes`.

    Without the iptables package there are none of ours: the node installs it before anything
    that creates a chain (kube-proxy, the kubelet, the CNI plugins) starts.
    """
    found: list[str] = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            for line in _out([f"{tool}-save", "-t", table], check=False).splitlines():
                if line.startswith(":") and line[1:].startswith(tuple(prefixes)):
                    found.append(f"{tool}/{table}/{line[1:].split()[0]}")
    return found


def remove_chains(prefixes: Sequence[str] = CHAIN_PREFIXES) -> list[str]:
    """Delete every iptables/ip6tables chain named with `prefixes`, and the jumps to them."""
    removed: list[str] = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            dump = _out([f"{tool}-save", "-t", table], check=False)
            ours = [
                line[1:].split()[0]
                for line in dump.splitlines()
                if line.startswith(":") and line[1:].startswith(tuple(prefixes))
            ]
            if not ours:
                continue
            for line in dump.splitlines():
                if not line.startswith("-A "):
                    continue
                chain = line.split()[1]
                target = re.search(r" -[jg] (\S+)", line)
                if chain not in ours and target is not None and target.group(1) in ours:
                    _quiet([tool, "-t", table, "-D", *_split_rule(line[3:])])
            for chain in ours:
                _quiet([tool, "-t", table, "-F", chain])
            for chain in ours:
                if _quiet([tool, "-t", table, "-X", chain]):
                    removed.append(f"{tool}/{table}/{chain}")
    return removed


def _split_rule(rule: str) -> list[str]:
    """iptables-save quotes arguments with spaces (comments); split the way a shell would."""
    import shlex

    return shlex.split(rule)


def remove_network(settings: NodeSettings) -> None:
    """Pod network namespaces, the bridge, and (after kube-proxy --cleanup) leftover chains."""
    for name in list_cni_netns():
        _quiet(["ip", "netns", "delete", name])
    if bridge_exists(settings):
        _quiet(["ip", "link", "delete", settings.bridge])
    remove_chains()


def list_cni_netns() -> list[str]:
    listing = _out(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in listing.splitlines() if line.startswith("cni-")]


# -- containerd --------------------------------------------------------------------------


def containerd_config(settings: NodeSettings) -> str:
    """containerd 1.6 config v2: local pause, restrict_oom_score_adj, runc v2 with
    cgroupfs, overlayfs, our CNI conf dir, and every path of its own under state/run dirs."""
    run, state = settings.run_dir, settings.state_dir
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{settings.containerd_root}"
state = "{run / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{settings.containerd_socket}"

[ttrpc]
  address = "{settings.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{state / "containerd-opt"}"

{cri}]
  sandbox_image = "{PAUSE_REF}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{run / "runc"}"

{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{state / "cni"}"
"""


def write_configs(settings: NodeSettings) -> None:
    for directory in (settings.state_dir, settings.run_dir, settings.logs):
        directory.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "containerd.toml").write_text(containerd_config(settings))
    cni = settings.state_dir / "cni"
    cni.mkdir(exist_ok=True)
    (cni / "10-ostinato.conflist").write_text(json.dumps(cni_config(settings), indent=1))
    # kubelet copies the host's resolv.conf into pods; an empty one keeps them to cluster DNS.
    (settings.state_dir / "resolv.conf").write_text("")
    hosts = settings.state_dir / "dns"
    hosts.mkdir(exist_ok=True)
    hosts.chmod(0o755)
    (hosts / "hosts").touch()
    (hosts / "hosts").chmod(0o644)


def start_containerd(settings: NodeSettings, spawn: Spawn) -> subprocess.Popen[bytes]:
    return spawn(
        "containerd",
        ["/usr/bin/containerd", "--config", str(settings.state_dir / "containerd.toml")],
    )


def containerd_ready(settings: NodeSettings) -> bool | None:
    ok = _quiet(["ctr", "--address", str(settings.containerd_socket), "version"])
    return True if ok else None


def remove_all_containers(settings: NodeSettings) -> int:
    """Kill and delete every task and container in k8s.io (the kubelet is gone by now)."""
    address = str(settings.containerd_socket)
    base = ["ctr", "--address", address, "--namespace", "k8s.io"]
    ids = _out([*base, "containers", "list", "--quiet"], check=False).split()
    for cid in ids:
        _quiet([*base, "tasks", "kill", "--signal", "SIGKILL", cid])
    for cid in ids:
        # `tasks delete --force` waits for the killed task and reaps it.
        _quiet([*base, "tasks", "delete", "--force", cid])
        _quiet([*base, "containers", "delete", cid])
    return len(ids)


# -- kubelet, kube-proxy, DNS ------------------------------------------------------------


def start_kube_proxy(
    settings: NodeSettings, kubeconfig: Path, kube_proxy: Path, spawn: Spawn
) -> subprocess.Popen[bytes]:
    return spawn(
        "kube-proxy",
        [
            str(kube_proxy),
            f"--kubeconfig={kubeconfig}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={settings.cluster_cidr}",
            f"--hostname-override={settings.node_name}",
            # Leave the machine's conntrack table size and timeouts as they are.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256",
            "--v=1",
        ],
    )


def kube_proxy_cleanup(kube_proxy: Path, log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.run(
            [str(kube_proxy), "--cleanup", "--v=1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )


def start_kubelet(
    settings: NodeSettings, kubeconfig: Path, kubelet: Path, ip: str, spawn: Spawn
) -> subprocess.Popen[bytes]:
    root = settings.state_dir / "kubelet"
    root.mkdir(parents=True, exist_ok=True)
    return spawn(
        "kubelet",
        [
            str(kubelet),
            f"--kubeconfig={kubeconfig}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{settings.containerd_socket}",
            f"--pod-infra-container-image={PAUSE_REF}",
            "--cgroup-driver=cgroupfs",
            "--fail-swap-on=false",
            f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}",
            f"--volume-plugin-dir={root / 'volume-plugins'}",
            f"--hostname-override={settings.node_name}",
            f"--node-ip={ip}",
            f"--pod-cidr={settings.pod_subnet}",
            f"--cluster-dns={settings.dns_service_ip}",
            f"--cluster-domain={settings.cluster_domain}",
            f"--resolv-conf={settings.state_dir / 'resolv.conf'}",
            "--image-gc-high-threshold=100",
            "--eviction-hard=nodefs.available<1%,imagefs.available<1%,memory.available<100Mi",
            "--read-only-port=0",
            "--v=1",
        ],
    )


def start_dns(
    settings: NodeSettings, kubeconfig: Path, spawn: Spawn
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """dnsmasq on the bridge address, and the loop that keeps its hosts file current."""
    hosts = settings.state_dir / "dns" / "hosts"
    dnsmasq = spawn(
        "dnsmasq",
        [
            "/usr/sbin/dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--log-facility=-",
            "--no-hosts",
            "--no-resolv",
            "--no-negcache",
            f"--listen-address={settings.gateway}",
            "--bind-interfaces",
            f"--addn-hosts={hosts}",
            f"--local=/{settings.cluster_domain}/",
            "--pid-file=",
            "--user=root",
        ],
    )
    loop = spawn(
        "dns-loop",
        [
            sys.executable,
            "-m",
            "hack.k8s.dnsloop",
            "--kubeconfig",
            str(kubeconfig),
            "--hosts",
            str(hosts),
            "--dnsmasq-pid",
            str(dnsmasq.pid),
            "--domain",
            settings.cluster_domain,
            "--interval",
            str(settings.dns_refresh),
        ],
    )
    return dnsmasq, loop


def start_volumes(settings: NodeSettings, kubeconfig: Path, spawn: Spawn) -> None:
    """The host-path provisioner of the cluster's default StorageClass (hack/k8s/volumes.py)."""
    spawn(
        "volume-loop",
        [
            sys.executable,
            "-m",
            "hack.k8s.volumes",
            "--kubeconfig",
            str(kubeconfig),
            "--root",
            str(settings.state_dir / "volumes"),
        ],
    )


def dns_objects(settings: NodeSettings) -> str:
    """The selectorless kube-dns Service and its manual Endpoints (dnsmasq on the gateway)."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": settings.dns_service_ip, "ports": ports},
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": settings.gateway}], "ports": ports}],
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [service, endpoints]})


# -- what is left after the processes are gone ---------------------------------------------


def mounts_under(prefixes: Sequence[Path]) -> list[str]:
    """Mount points below any of `prefixes`, deepest first (the order to unmount them in)."""
    points: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_under(prefixes: Sequence[Path]) -> None:
    for point in mounts_under(prefixes):
        if not _quiet(["umount", point]):
            _quiet(["umount", "-l", point])


def kill_pod_processes() -> None:
    """SIGKILL whatever still runs in the kubepods cgroups (after a crash took the shims)."""
    for procs in Path("/sys/fs/cgroup").glob("*/kubepods/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)


def shim_pids(settings: NodeSettings) -> list[int]:
    """containerd-shim processes serving our containerd (they outlive it after a crash)."""
    found: list[int] = []
    needle = str(settings.containerd_socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes()
            if b"containerd-shim" in cmd.split(b"\0")[0] and needle in cmd:
                found.append(int(entry.name))
    return found


def remove_kubepods_cgroups() -> list[Path]:
    """rmdir the kubelet's kubepods cgroup trees (empty once every pod process is gone)."""
    left: list[Path] = []
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        try:
            top.rmdir()
        except OSError:
            left.append(top)
    return left
