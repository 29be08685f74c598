"""The soak's webhook patch: loop pods get the records and the node modules on PYTHONPATH, and
nothing else of theirs changes."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from soak.admission import CODE_MOUNT, RECORDS_MOUNT, patch, review

pytestmark = pytest.mark.timeout(30)


def apply(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 `add`, the only operation the patch uses (`-` appends)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        *parents, last = op["path"].lstrip("/").split("/")
        target: Any = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            assert last == "-", op
            target.append(op["value"])
        else:
            assert last not in target, op  # `add` of an existing member would replace it
            target[last] = op["value"]
    return out


def pod(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "soak-worker-0"},
        "spec": {
            "containers": [{"name": "loop", "image": "i", **container}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def test_a_loop_pod_gets_both_mounts_and_the_code_on_its_python_path() -> None:
    before = pod(
        env=[{"name": "OSTINATO_CURVE_CLIENT_SECRET", "value": "x"}],
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    after = apply(before, patch(before, Path("/r"), Path("/c")))
    spec = after["spec"]
    assert spec["volumes"][1:] == [
        {"name": "soak-records", "hostPath": {"path": "/r", "type": "Directory"}},
        {"name": "soak-code", "hostPath": {"path": "/c", "type": "Directory"}},
    ]
    (container,) = spec["containers"]
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "soak-records", "mountPath": RECORDS_MOUNT},
        {"name": "soak-code", "mountPath": CODE_MOUNT, "readOnly": True},
    ]
    assert container["env"][0]["name"] == "OSTINATO_CURVE_CLIENT_SECRET"
    assert container["env"][1] == {
        "name": "PYTHONPATH",
        "value": f"{CODE_MOUNT}:/opt/ostinato/examples",
    }
    assert after["metadata"] == before["metadata"]
    assert container["image"] == "i"


def test_a_container_without_env_or_mounts_gets_the_lists_made() -> None:
    before = pod()
    after = apply(before, patch(before, Path("/r"), Path("/c")))
    (container,) = after["spec"]["containers"]
    assert [m["name"] for m in container["volumeMounts"]] == ["soak-records", "soak-code"]
    assert [e["name"] for e in container["env"]] == ["PYTHONPATH"]


def test_the_review_allows_with_the_patch_and_echoes_the_uid() -> None:
    answer = review({"request": {"uid": "abc-1", "object": pod()}}, Path("/r"), Path("/c"))
    response = answer["response"]
    assert (answer["kind"], response["uid"], response["allowed"]) == (
        "AdmissionReview",
        "abc-1",
        True,
    )
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    assert ops == patch(pod(), Path("/r"), Path("/c"))
