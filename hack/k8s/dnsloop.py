"""Cluster DNS without CoreDNS: write every Service's names to dnsmasq's hosts file every 2 s."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hack.k8s._api import Api


def hosts_lines(services: list[Any], endpoints: list[Any], domain: str) -> list[str]:
    """`<ip> <svc>.<ns>.svc.<domain> <svc>.<ns>.svc <svc>.<ns>` for every Service with a
    ClusterIP, and for every ready address of a headless Service (plus `<hostname>.<svc>...`
    for endpoints that carry a hostname, as StatefulSet pods do). Objects are API JSON."""
    by_key = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    lines: list[str] = []
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        names = f"{name}.{ns}.svc.{domain} {name}.{ns}.svc {name}.{ns}"
        spec = svc.get("spec", {})
        if spec.get("type") == "ExternalName":
            continue
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            lines.append(f"{cluster_ip} {names}")
            continue
        ep = by_key.get((ns, name), {})
        for subset in ep.get("subsets") or []:
            for address in subset.get("addresses") or []:
                lines.append(f"{address['ip']} {names}")
                if address.get("hostname"):
                    host = f"{address['hostname']}.{name}.{ns}"
                    lines.append(f"{address['ip']} {host}.svc.{domain} {host}.svc")
    return lines


def write_if_changed(path: Path, content: str) -> bool:
    try:
        if path.read_text() == content:
            return False
    except OSError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return True


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    api = Api(args.kubeconfig)
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            services = api.items("/api/v1/services")
            endpoints = api.items("/api/v1/endpoints")
            content = "".join(f"{line}\n" for line in hosts_lines(services, endpoints, args.domain))
            if write_if_changed(args.hosts, content):
                # dnsmasq rereads --addn-hosts files (and drops removed names) on SIGHUP.
                os.kill(args.dnsmasq_pid, signal.SIGHUP)
            failures = 0
        except ProcessLookupError:
            print("dnsmasq is gone; stopping", file=sys.stderr, flush=True)
            return 1
        except (OSError, ValueError, KeyError) as exc:  # the apiserver restarting: retry
            failures += 1
            if failures == 1 or failures % 30 == 0:
                print(f"refresh failed ({failures}x): {exc}", file=sys.stderr, flush=True)
        stop.wait(max(0.0, args.interval - (time.monotonic() - started)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.k8s.dnsloop", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--hosts", type=Path, required=True, help="dnsmasq --addn-hosts file")
    parser.add_argument("--dnsmasq-pid", type=int, required=True, help="sent SIGHUP on changes")
    parser.add_argument("--domain", default="cluster.local")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
