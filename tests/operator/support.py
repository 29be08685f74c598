"""Shared helpers for the operator tests: example documents and Workflow objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    return doc


def as_object(doc: dict[str, Any], namespace: str = "ns1", uid: str = "uid-1") -> dict[str, Any]:
    """The document as the API server would hand it to the operator."""
    obj = copy.deepcopy(doc)
    obj["metadata"].update({"namespace": namespace, "uid": uid, "generation": 1})
    return obj
