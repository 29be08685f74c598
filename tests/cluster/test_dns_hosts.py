"""The cluster DNS hosts file: what names a Service gets (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hack.k8s.dnsloop import hosts_lines, write_if_changed


def service(ns: str, name: str, cluster_ip: str | None, kind: str = "ClusterIP") -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": cluster_ip, "type": kind},
    }


def endpoints(ns: str, name: str, *addresses: tuple[str, str | None]) -> dict[str, Any]:
    listed = [{"ip": ip, **({"hostname": host} if host else {})} for ip, host in addresses]
    return {"metadata": {"namespace": ns, "name": name}, "subsets": [{"addresses": listed}]}


def test_cluster_ip_headless_and_external_name_services() -> None:
    services = [
        service("b", "web", "10.0.0.20"),
        service("a", "db", "None"),
        service("a", "ext", None, kind="ExternalName"),
        service("a", "pending", "None"),  # headless, no endpoints yet: no names
    ]
    eps = [
        endpoints("a", "db", ("10.244.0.5", "db-0"), ("10.244.0.6", None)),
        endpoints("b", "web", ("10.244.0.7", None)),  # behind a ClusterIP: not listed
    ]
    assert hosts_lines(services, eps, "cluster.local") == [
        "10.244.0.5 db.a.svc.cluster.local db.a.svc db.a",
        "10.244.0.5 db-0.db.a.svc.cluster.local db-0.db.a.svc",
        "10.244.0.6 db.a.svc.cluster.local db.a.svc db.a",
        "10.0.0.20 web.b.svc.cluster.local web.b.svc web.b",
    ]


def test_hosts_file_rewritten_only_on_change(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    assert write_if_changed(hosts, "10.0.0.1 a\n")
    assert not write_if_changed(hosts, "10.0.0.1 a\n")
    assert write_if_changed(hosts, "")
    assert hosts.read_text() == ""
    assert hosts.stat().st_mode & 0o777 == 0o644
