"""Debian packages the node and the image builds need, installed on demand (root on Debian only)."""

from __future__ import annotations

import os
from pathlib import Path

from hack.k8s import apt
from hack.k8s.binaries import Unavailable

# Package -> a program it provides (so a machine that has the program another way is fine).
NODE_PACKAGES: dict[str, str] = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "dnsmasq-base": "/usr/sbin/dnsmasq",
    "iproute2": "/usr/sbin/ip",
}
IMAGE_PACKAGES: dict[str, str] = {
    "debootstrap": "/usr/sbin/debootstrap",
    "buildah": "/usr/bin/buildah",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
    "containerd": "/usr/bin/ctr",
}


def why_impossible() -> str | None:
    """Why this machine cannot run a node (one line), or None when it can."""
    if not Path("/etc/debian_version").exists():
        return "not Debian"
    if os.geteuid() != 0:
        return "not root (containerd, kubelet and the CNI bridge need root)"
    return None


def ensure_packages(packages: dict[str, str]) -> None:
    """apt-get install the packages whose program is missing; Unavailable when we cannot."""
    missing = [name for name, program in packages.items() if not Path(program).exists()]
    if not missing:
        return
    why = why_impossible()
    if why is not None:
        raise Unavailable(f"cluster unavailable ({why}): needs apt packages {' '.join(missing)}")
    # A failure here (AptError) is not "unavailable": this machine should manage it.
    apt.install(missing)
