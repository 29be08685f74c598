"""RBAC follows watch.namespaces: a ClusterRole cluster-wide, a Role per namespace otherwise."""

from __future__ import annotations

from typing import Any

from .conftest import NAMESPACE, RELEASE, Manifest, Render

RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": f"{RELEASE}-ostinato", "namespace": NAMESPACE}


def _rules_granting(role: Manifest, resource: str) -> list[dict[str, Any]]:
    return [r for r in role.get("rules", []) if resource in r.get("resources", [])]


def _grants(role: Manifest, resource: str, verb: str) -> bool:
    return any(verb in r["verbs"] for r in _rules_granting(role, resource))


def _bound(objects: list[Manifest], binding_kind: str, role: Manifest) -> list[Manifest]:
    """Bindings of `binding_kind` that give `role` to the operator's ServiceAccount."""
    return [
        b
        for b in objects
        if b["kind"] == binding_kind
        and b["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role["kind"],
            "name": role["metadata"]["name"],
        }
        and SERVICE_ACCOUNT in b["subjects"]
        and b["metadata"].get("namespace") == role["metadata"].get("namespace")
    ]


def _workflow_roles(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind and _grants(o, "workflows", "watch")]


def test_cluster_wide_by_default(render: Render) -> None:
    objects = render()
    (role,) = _workflow_roles(objects, "ClusterRole")
    assert len(_bound(objects, "ClusterRoleBinding", role)) == 1
    assert _workflow_roles(objects, "Role") == []
    for resource, verb in [
        ("pods", "create"),
        ("pods", "delete"),
        ("workflows/status", "patch"),
        ("secrets", "get"),
        ("secrets", "patch"),
    ]:
        assert _grants(role, resource, verb), f"{resource}: {verb} missing"


def _verbs(role: Manifest, resource: str) -> set[str]:
    return {verb for rule in _rules_granting(role, resource) for verb in rule["verbs"]}


def test_network_policies_are_granted_what_the_operator_calls(render: Render) -> None:
    """Applied (create, patch), listed and deleted (when turned off): nothing else, in either
    mode, and whether the chart turns them on or off (off, the operator deletes its own)."""
    for values in (
        {},
        {"networkPolicy": {"enabled": False}},
        {"watch": {"namespaces": ["team-a"]}},
    ):
        objects = render(values)
        roles = _workflow_roles(objects, "Role") or _workflow_roles(objects, "ClusterRole")
        assert roles, values
        for role in roles:
            assert _verbs(role, "networkpolicies") == {"create", "patch", "list", "delete"}
            (rule,) = _rules_granting(role, "networkpolicies")
            assert rule["apiGroups"] == ["networking.k8s.io"]


def test_namespaced_mode_has_one_role_per_namespace_and_no_cluster_grant(render: Render) -> None:
    objects = render({"watch": {"namespaces": ["team-a", "team-b"]}})
    roles = _workflow_roles(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert len(_bound(objects, "RoleBinding", role)) == 1, role["metadata"]
    # Nothing cluster-wide may touch workflows, pods or secrets in this mode.
    for role in (o for o in objects if o["kind"] == "ClusterRole"):
        for resource in (
            "workflows",
            "pods",
            "secrets",
            "configmaps",
            "deployments",
            "networkpolicies",
        ):
            assert not _rules_granting(role, resource), (role["metadata"]["name"], resource)


def test_least_privilege(render: Render) -> None:
    for values in ({}, {"watch": {"namespaces": ["team-a"]}}):
        for role in (o for o in render(values) if o["kind"] in ("Role", "ClusterRole")):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            # The operator reads a workflow's Secret by name (its control token), never lists
            # or watches Secrets, and never deletes one.
            for verb in ("list", "watch", "delete", "update"):
                assert not _grants(role, "secrets", verb), (role["metadata"]["name"], verb)


def test_rbac_create_false_renders_no_rbac(render: Render) -> None:
    for values in (
        {"rbac": {"create": False}},
        {"rbac": {"create": False}, "watch": {"namespaces": ["a"]}},
    ):
        kinds = {o["kind"] for o in render(values)}
        assert not kinds & RBAC_KINDS, kinds
