"""`validate FILE`: `ostinato validate`'s own checks, then a server-side dry run of the Workflow
(the CRD's schema, the admission webhook), so a file that passes is one the cluster takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from .._crd import GROUP, KIND, PLURAL, VERSION
from ._connect import Target
from ._errors import PluginError
from ._workflows import api_message, custom_api

__all__ = ["FIELD_MANAGER", "validate_file"]

#: The field manager named in the dry run (nothing is stored under it).
FIELD_MANAGER = "kubectl-ostinato"
_APPLY = "application/apply-patch+yaml"


def _runtime_checks(path: Path) -> None:
    """`ostinato validate FILE` itself (it imports every class the file names, as a pod would);
    its own lines are printed as they are."""
    done = subprocess.run(
        [sys.executable, "-m", "ostinato", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise PluginError(" ".join(done.stderr.split()) or f"{path}: ostinato validate failed")


def _manifest(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PluginError(f"{path}: {' '.join(str(exc).split())}") from None
    wanted = f"{GROUP}/{VERSION}"
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("apiVersion") != wanted:
        raise PluginError(f"{path}: not a Workflow manifest (apiVersion {wanted}, kind {KIND})")
    if not (doc.get("metadata") or {}).get("name"):
        raise PluginError(f"{path}: metadata.name: a Workflow needs a name")
    return doc


def validate_file(target: Target, path: Path) -> str:
    """What the cluster said (one line); a PluginError with the first refusal."""
    _runtime_checks(path)
    doc = _manifest(path)
    name = doc["metadata"]["name"]
    namespace = doc["metadata"].get("namespace") or target.namespace
    try:
        # Server-side apply, dry run: creates or updates alike, and names an undeclared field
        # ("field not declared in schema") that a plain create would silently drop.
        custom_api(target).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, doc,
            dry_run="All", field_manager=FIELD_MANAGER, force=True, _content_type=_APPLY,
        )  # fmt: skip
    except ApiException as exc:
        raise PluginError(f"{path}: the cluster refuses it: {api_message(exc)}") from None
    return f"{path}: ok: the cluster accepts workflow {name!r} in namespace {namespace!r} (dry run)"
