"""The Workflow's NetworkPolicies on a real API server, under the chart's ServiceAccount and with
the settings the chart gives the operator: exactly the selectors and ports wanted, kept so,
changed with the settings, and deleted (only the operator's own) when turned off. The test
cluster does not enforce them: these are checks of the objects, not of traffic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.k8s._util import wait_until

from .conftest import CHART, OPERATOR_NS, RELEASE, Installed, Operator, run_operator
from .support import example

pytestmark = pytest.mark.timeout(300)

MONITORING = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
PROMETHEUS = {
    "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["prom"]}]
}
#: The chart's operator pods: what the hubs must admit on their HTTP port.
OPERATOR = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NS}},
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "ostinato",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "operator",
        }
    },
}
ZMQ = [{"protocol": "TCP", "port": 5555}]
HTTP = [{"protocol": "TCP", "port": 8080}]


def _pods_of(workflow: str, component: str) -> dict[str, Any]:
    return {
        "matchLabels": {
            "app.kubernetes.io/name": "ostinato",
            "app.kubernetes.io/instance": workflow,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "ostinato-operator",
            "app.kubernetes.io/part-of": workflow,
            "ostinato.dev/workflow": workflow,
        }
    }


def _specs(workflow: str, scraper: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The two policies' specs as the API server must hold them."""
    loops = {"podSelector": _pods_of(workflow, "loop")}
    return {
        f"{workflow}-hub": {
            "podSelector": _pods_of(workflow, "hub"),
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [loops], "ports": ZMQ},
                {"from": [OPERATOR, loops, *scraper], "ports": HTTP},
            ],
        },
        f"{workflow}-loops": {
            "podSelector": _pods_of(workflow, "loop"),
            "policyTypes": ["Ingress"],
            **({"ingress": [{"from": scraper, "ports": HTTP}]} if scraper else {}),
        },
    }


def _chart_env(installed: Installed, tmp_path: Path, values: dict[str, Any]) -> dict[str, str]:
    """The OSTINATO_NETWORK_POLICY* variables the chart gives its operator for these values."""
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({"networkPolicy": values}))
    rendered = installed.plane.helm(
        "template", RELEASE, str(CHART), "--namespace", OPERATOR_NS, "--values", str(path)
    ).stdout
    deployment = next(
        d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Deployment"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {
        e["name"]: e["value"]
        for e in container["env"]
        if e["name"].startswith("OSTINATO_NETWORK_POLICY")
    }
    assert "OSTINATO_NETWORK_POLICY" in env, container["env"]
    return env


def _policies(op: Operator, ns: str) -> dict[str, dict[str, Any]]:
    out = json.loads(op.kubectl("get", "networkpolicies", "-n", ns, "-o", "json").stdout)
    return {p["metadata"]["name"]: p for p in out["items"]}


def _specs_become(op: Operator, ns: str, want: dict[str, dict[str, Any]], what: str) -> None:
    """Wait until the namespace's policies of those names have exactly those specs."""
    seen: list[Any] = []

    def done() -> bool | None:
        got = {n: p["spec"] for n, p in _policies(op, ns).items() if n in want}
        seen[:] = [got]
        return True if got == want else None

    try:
        wait_until(done, timeout=60, what=what)
    except TimeoutError:
        pytest.fail(f"{what}: wanted {json.dumps(want)}\ngot {json.dumps(seen[-1])}")


def _apply(op: Operator, ns: str, doc: dict[str, Any]) -> None:
    op.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))


def _reconciled(op: Operator, ns: str, name: str) -> dict[str, Any]:
    """The Workflow once the operator has acted on its current generation."""

    def seen() -> dict[str, Any] | None:
        out = op.kubectl("get", "workflow", name, "-n", ns, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        wf: dict[str, Any] = json.loads(out.stdout)
        done = (wf.get("status") or {}).get("observedGeneration") == wf["metadata"]["generation"]
        return wf if done else None

    found: dict[str, Any] = wait_until(seen, timeout=60, what=f"{name} reconciled")
    return found


def test_the_policies_are_exact_owned_and_kept_so(
    installed: Installed, namespace: str, tmp_path: Path
) -> None:
    ns, doc = namespace, example("k8s-counter.yaml")
    scraper = {"namespaceSelector": MONITORING, "podSelector": PROMETHEUS}
    env = _chart_env(installed, tmp_path, {"enabled": True, "metricsScraper": scraper})
    with run_operator(installed, webhook=False, **env) as op:
        _apply(op, ns, doc)
        want = _specs("counter", [scraper])
        _specs_become(op, ns, want, "the counter's NetworkPolicies")
        wf = _reconciled(op, ns, "counter")
        for name, policy in _policies(op, ns).items():
            refs = policy["metadata"]["ownerReferences"]
            assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs] == [
                ("Workflow", "counter", wf["metadata"]["uid"], True)
            ], name
            assert policy["metadata"]["labels"]["ostinato.dev/workflow"] == "counter"
            assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
                "ostinato-operator"
            )

        # Someone opens the hub to everyone; the next reconcile (any change to the Workflow)
        # puts the policy back as the operator wants it.
        opened = [{"op": "add", "path": "/spec/ingress/-", "value": {}}]
        op.kubectl(
            "patch", "networkpolicy", "counter-hub", "-n", ns, "--type=json",
            "-p", json.dumps(opened),
        )  # fmt: skip
        assert _policies(op, ns)["counter-hub"]["spec"] != want["counter-hub"]
        scale = [{"op": "replace", "path": "/spec/loops/1/replicas", "value": 2}]
        op.kubectl("patch", "owf", "counter", "-n", ns, "--type=json", "-p", json.dumps(scale))
        _specs_become(op, ns, want, "the hub's policy restored by the next reconcile")


def test_a_settings_change_reaches_the_policies_and_off_deletes_only_the_operators(
    installed: Installed, namespace: str, tmp_path: Path
) -> None:
    ns, doc = namespace, example("k8s-counter.yaml")
    # A user's own policies, one of them labelled as if it were the operator's: neither is
    # the Workflow's, so neither may be touched.
    for name, labels in (
        ("mine", {}),
        (
            "counter-lookalike",
            {
                "ostinato.dev/workflow": "counter",
                "app.kubernetes.io/managed-by": "ostinato-operator",
            },
        ),
    ):
        theirs = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "labels": labels},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
        installed.plane.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(theirs))

    first = {"namespaceSelector": MONITORING, "podSelector": {}}
    env = _chart_env(installed, tmp_path, {"enabled": True, "metricsScraper": first})
    with run_operator(installed, webhook=False, **env) as op:
        _apply(op, ns, doc)
        _specs_become(op, ns, _specs("counter", [first]), "the policies with the first scraper")

    # Another scraper, chosen by its pods only (in any namespace): the operator's restart (a
    # helm upgrade) updates the Workflows it finds.
    second = {"namespaceSelector": {}, "podSelector": PROMETHEUS}
    env = _chart_env(installed, tmp_path, {"metricsScraper": {"podSelector": PROMETHEUS}})
    with run_operator(installed, webhook=False, **env) as op:
        _specs_become(op, ns, _specs("counter", [second]), "the policies with the second scraper")

    # No scraper at all: the hub admits the operator and the loops, the loop pods nobody.
    env = _chart_env(installed, tmp_path, {"metricsScraper": {}})
    with run_operator(installed, webhook=False, **env) as op:
        _specs_become(op, ns, _specs("counter", []), "the policies without a scraper")

    env = _chart_env(installed, tmp_path, {"enabled": False})
    assert env == {"OSTINATO_NETWORK_POLICY": "false"}
    with run_operator(installed, webhook=False, **env) as op:
        wait_until(
            lambda: True if set(_policies(op, ns)) == {"mine", "counter-lookalike"} else None,
            timeout=60,
            what="the operator's policies deleted, the user's kept",
        )
        events = json.loads(
            op.kubectl(
                "get", "events", "-n", ns, "--field-selector", "involvedObject.name=counter",
                "-o", "json",
            ).stdout
        )["items"]  # fmt: skip
        removed = [e["message"] for e in events if e["reason"] == "NetworkPoliciesRemoved"]
        assert removed, [e["reason"] for e in events]
        assert "counter-hub" in removed[0]
        assert "counter-loops" in removed[0]

        # A Workflow applied while they are off gets every child but a NetworkPolicy.
        other = example("k8s-counter.yaml")
        other["metadata"]["name"] = "other"
        _apply(op, ns, other)
        _reconciled(op, ns, "other")
        assert op.kubectl("get", "deployment", "other-hub", "-n", ns).returncode == 0
        assert set(_policies(op, ns)) == {"mine", "counter-lookalike"}
