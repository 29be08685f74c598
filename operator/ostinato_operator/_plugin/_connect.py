"""Which cluster and namespace a command talks to, read from the kubeconfig the way kubectl does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.config.config_exception import ConfigException

from ._errors import PluginError

__all__ = ["Target", "connect"]


@dataclass(frozen=True)
class Target:
    """An API client for one kubeconfig context, and the namespace commands act in."""

    api: Any  # kubernetes.client.ApiClient (the client is untyped)
    namespace: str
    context: str | None

    def close(self) -> None:
        self.api.close()


def _config_file(kubeconfig: str | None) -> str | None:
    """--kubeconfig, else $KUBECONFIG (a list of files, merged as kubectl does), else the
    client's default (~/.kube/config); read now, not when the client was first imported."""
    return kubeconfig or os.environ.get("KUBECONFIG") or None


def connect(
    kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None
) -> Target:
    """The context's cluster and credentials; the namespace: the flag, else the context's, else
    `default`. Inside a pod without a kubeconfig: the pod's service account and namespace."""
    config = kubernetes.client.Configuration()
    loader: Any = kubernetes.config
    path = _config_file(kubeconfig)
    try:
        if _in_pod_without_kubeconfig(path, context):
            loader.load_incluster_config(client_configuration=config)
            return Target(kubernetes.client.ApiClient(config), namespace or _pod_namespace(), None)
        contexts, active = loader.list_kube_config_contexts(config_file=path)
        chosen = active
        if context is not None:
            chosen = next((c for c in contexts if c.get("name") == context), None)
            if chosen is None:
                raise PluginError(f"--context {context}: no such context in the kubeconfig")
        loader.load_kube_config(config_file=path, context=context, client_configuration=config)
    except (ConfigException, OSError) as exc:
        where = path or "~/.kube/config"
        raise PluginError(f"kubeconfig {where}: {_one_line(exc)}") from None
    if not config.verify_ssl:
        # The kubeconfig says insecure-skip-tls-verify: kubectl takes it without a word, and
        # urllib3 would warn at every request.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    default = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    name = (chosen or {}).get("name")
    return Target(kubernetes.client.ApiClient(config), namespace or default, name)


def _in_pod_without_kubeconfig(path: str | None, context: str | None) -> bool:
    return (
        path is None
        and context is None
        and "KUBERNETES_SERVICE_HOST" in os.environ
        and not os.path.exists(os.path.expanduser("~/.kube/config"))
    )


def _pod_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
