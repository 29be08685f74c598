"""`ostinato-operator`: flags -> settings, metrics, the Lease, then kopf running our handlers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

import kopf
from pydantic import ValidationError

from ._settings import OperatorSettings

__all__ = ["build_parser", "main", "settings_from_args"]

log = logging.getLogger("ostinato.operator")

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ostinato-operator",
        description="Runs ostinato Workflow resources on Kubernetes: a hub and one pod per loop "
        "replica per Workflow, status from the hub. Flags override OSTINATO_* variables.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeat)"
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (default)"
    )
    p.add_argument("--image", help="image of hubs and loops (env OSTINATO_IMAGE)")
    p.add_argument("--image-pull-policy", choices=["Always", "IfNotPresent", "Never"])
    p.add_argument("--metrics-port", type=int, help="port of /metrics, 0 disables (9090)")
    p.add_argument("--liveness-port", type=int, help="port of /healthz, 0 disables (8081)")
    p.add_argument("--status-interval", type=float, help="seconds between hub polls (5)")
    p.add_argument("--hub-url-template", help="hub HTTP address; {name}, {namespace}")
    p.add_argument(
        "--max-pods-per-workflow",
        type=int,
        help="most loop pods one Workflow may have; more is refused (50)",
    )
    p.add_argument(
        "--webhook",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve and register the validating admission webhook",
    )
    p.add_argument(
        "--network-policy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="give every Workflow NetworkPolicies for its hub and loop pods (default: on); "
        "off deletes those the operator made",
    )
    p.add_argument("--webhook-host", help="name the API server calls the webhook at")
    p.add_argument("--webhook-port", type=int, help="port the webhook listens on (9443)")
    p.add_argument("--webhook-addr", help="address the webhook listens on (0.0.0.0)")
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hold a Lease so one replica acts (default: on inside a pod)",
    )
    p.add_argument("--lease-namespace", help="namespace of the Lease (default: the pod's)")
    p.add_argument(
        "--lease-name", help="name of the Lease (ostinato-operator; Helm: the release's)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def _pod_namespace() -> str | None:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _SA_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    in_pod = "KUBERNETES_SERVICE_HOST" in os.environ
    base = OperatorSettings.from_env()
    leader = (
        args.leader_elect if args.leader_elect is not None else (base.leader_election or in_pod)
    )
    return OperatorSettings.from_env(
        namespaces=tuple(args.namespace)
        if args.namespace
        else (() if args.all_namespaces else None),
        image=args.image,
        image_pull_policy=args.image_pull_policy,
        metrics_port=args.metrics_port,
        liveness_port=args.liveness_port,
        status_interval_seconds=args.status_interval,
        hub_url_template=args.hub_url_template,
        max_pods_per_workflow=args.max_pods_per_workflow,
        webhook=args.webhook,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        webhook_addr=args.webhook_addr,
        leader_election=leader,
        lease_namespace=args.lease_namespace or base.lease_namespace or _pod_namespace(),
        lease_name=args.lease_name,
        network_policy=args.network_policy,
        # The operator admits itself to its hubs: in a pod, by its own namespace.
        network_policy_operator_namespace=base.network_policy_operator_namespace
        or _pod_namespace(),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # kopf's handler on the root logger is the only one: logging.basicConfig besides it (as
    # before) wrote every record twice. Set up first, so the Lease's messages go through it too.
    kopf.configure(verbose=args.verbose)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(map(str, err["loc"]))
            message = err["msg"].removeprefix("Value error, ")
            print(f"ostinato-operator: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 2
    if settings.leader_election and not settings.lease_namespace:
        print("ostinato-operator: --lease-namespace is needed outside a pod", file=sys.stderr)
        return 2
    from . import _handlers, _metrics  # noqa: F401  (registers the handlers with kopf)
    from ._lifecycle import Signals, run

    # Signals first: every thread started from here on (metrics, Lease, kopf) inherits the mask.
    with Signals() as signals:
        if settings.metrics_port:
            _metrics.serve(settings.metrics_port)
        holder = None
        if settings.leader_election:
            from ._kube import Kube
            from ._leader import LeaseHolder
            from ._owners import deployment_owner

            assert settings.lease_namespace is not None  # checked above
            api = Kube.connect().api
            owner = None
            if settings.lease_owner_deployment:
                owner = deployment_owner(
                    api,
                    settings.lease_owner_deployment,
                    settings.lease_namespace,
                    settings.lease_request_timeout_seconds,
                )
            holder = LeaseHolder(
                api,
                settings.lease_name,
                settings.lease_namespace,
                settings.lease_duration_seconds,
                settings.lease_renew_seconds,
                request_timeout_seconds=settings.lease_request_timeout_seconds,
                owner=owner,
            )
        liveness = (
            f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        )

        def run_kopf(stop: threading.Event) -> None:
            kopf.run(
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                liveness_endpoint=liveness,
                standalone=True,
                memo=kopf.Memo(config=settings),
                stop_flag=stop,
            )

        return run(settings, signals, holder, run_kopf)
