"""spec.loops and spec.queues as lists keyed by name, on the 1.20 API server: server-side apply
merges a loop by its name (one field manager pauses a loop, another owns the rest), and two loops
of one name are refused before any webhook or operator sees them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ostinato_operator import GROUP, KIND, PLURAL, VERSION

from .conftest import Installed
from .support import example

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


def _apply(installed: Installed, namespace: str, doc: dict[str, Any], manager: str) -> Any:
    return installed.plane.kubectl(
        "apply", "--server-side", f"--field-manager={manager}", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(doc), check=False,
    )  # fmt: skip


def _loops(installed: Installed, namespace: str) -> list[dict[str, Any]]:
    got = installed.plane.kubectl("get", "owf", "counter", "-n", namespace, "-o", "yaml").stdout
    loops: list[dict[str, Any]] = yaml.safe_load(got)["spec"]["loops"]
    return loops


def test_server_side_apply_merges_loops_by_name(installed: Installed, namespace: str) -> None:
    doc = example("k8s-counter.yaml")
    assert _apply(installed, namespace, doc, "owner").returncode == 0
    pause = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": "counter"},
        "spec": {"loops": [{"name": "reader", "state": "paused"}]},
    }
    applied = _apply(installed, namespace, pause, "pauser")
    assert applied.returncode == 0, applied.stderr
    loops = _loops(installed, namespace)
    assert [(lp["name"], lp.get("state")) for lp in loops] == [
        ("writer", None),
        ("reader", "paused"),
    ]
    assert loops[1]["nodes"] == doc["spec"]["loops"][1]["nodes"], "the reader lost its nodes"
    # The owner applies its document again, without the state: the pauser's field stays.
    assert _apply(installed, namespace, doc, "owner").returncode == 0
    assert _loops(installed, namespace)[1].get("state") == "paused"


def test_two_loops_of_one_name_are_refused_by_the_api_server(
    installed: Installed, namespace: str
) -> None:
    doc = example("k8s-counter.yaml")
    doc["spec"]["loops"].append(dict(doc["spec"]["loops"][0]))
    refused = _apply(installed, namespace, doc, "owner")
    assert refused.returncode != 0
    assert '.spec.loops: duplicate entries for key [name="writer"]' in refused.stderr
    created = installed.plane.kubectl(
        "create", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert created.returncode != 0
    assert "spec.loops[2]: Duplicate value" in created.stderr, created.stderr
    got = installed.plane.kubectl("get", PLURAL, "-n", namespace, "-o", "name").stdout
    assert got.strip() == ""
