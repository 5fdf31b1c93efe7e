"""The chart's RBAC grants exactly what the operator calls: no verb missing, none unused.

The expected permissions are derived, not listed by hand: the operator's own Kubernetes client calls are
found by scanning its source for ``kubernetes`` client method names, kopf's needs follow from which kopf
features the code uses (resource handlers, events, peering, CRD observation). A new client call the
chart does not grant fails here; so does a grant that nothing calls.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kopf
import pytest
from test_chart_tools import find, render

from swarm_operator.names import GROUP, PLURAL

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "swarm_operator"
Perm = tuple[str, str, str]  # (apiGroup, resource, verb)

#: kubernetes-client verb prefixes and the RBAC verb each needs.
_CLIENT_VERBS = {
    "read": "get",
    "list": "list",
    "create": "create",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
}
_CORE_KINDS = {
    "secret": "secrets",
    "event": "events",
    "config_map": "configmaps",
    "namespace": "namespaces",
    "pod": "pods",
    "service": "services",
    "service_account": "serviceaccounts",
}
_CLIENT_CALL = re.compile(
    r"^(read|list|create|patch|replace|delete)_(namespaced_|cluster_)?([a-z_]+?)(_status)?(_for_all_namespaces)?$"
)


def _client_methods() -> frozenset[str]:
    """Every API method of the official client (CoreV1Api.read_namespaced_secret, ...)."""
    import kubernetes.client

    return frozenset(
        name
        for api in (
            getattr(kubernetes.client, attr) for attr in dir(kubernetes.client) if attr.endswith("Api")
        )
        if isinstance(api, type)
        for name in vars(api)
        if _CLIENT_CALL.match(name) and not name.endswith("_with_http_info")
    )


def _module_path(module: str) -> Path | None:
    parts = module.split(".")[1:]
    for candidate in (PACKAGE.joinpath(*parts).with_suffix(".py"), PACKAGE.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """``swarm_operator`` modules imported anywhere in this file (function-level imports too)."""
    found: set[str] = set()
    package = "swarm_operator." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.rstrip(".").split(".")[: len(package.rstrip(".").split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("swarm_operator")}


def _sources() -> Iterable[tuple[Path, str]]:
    """The modules the in-cluster operator runs: what ``swarm-operator run`` imports, transitively.

    Client-side commands (status, attach, the playground) and the emulators are not part of it, so
    their API calls need no grant in the operator's role.
    """
    import swarm_operator.cli as cli

    roots = {"swarm_operator.handlers"} | {
        m
        for m in _imports(Path(cli.__file__))
        if f"import {m.rsplit('.', 1)[-1]}" in inspect.getsource(cli._cmd_run)
    }
    seen: dict[str, Path] = {}
    todo = sorted(roots)
    while todo:
        module = todo.pop()
        path = _module_path(module)
        if path is None or module in seen:
            continue
        seen[module] = path
        todo.extend(_imports(path) - set(seen))
    for path in sorted(set(seen.values())):
        yield path, path.read_text()


#: Modules whose client calls reach only the operator's own namespace (its "-own" Role grants them).
_OWN_NAMESPACE_MODULES = frozenset({"_released.py"})


def client_permissions(*, own: bool = False) -> set[Perm]:
    """Permissions the operator's direct kubernetes-client calls need (``own``: those of the calls
    made only in its own namespace, which no tenant namespace's role grants)."""
    perms: set[Perm] = set()
    for path, text in _sources():
        if (path.name in _OWN_NAMESPACE_MODULES) != own:
            continue
        for name in set(re.findall(r"\b[a-z_]+\b", text)) & _client_methods():
            verb, _scope, kind, status, _all = _CLIENT_CALL.match(name).groups()  # type: ignore[union-attr]
            if kind == "custom_object":
                # Every custom-object call in the package targets our resource (checked below).
                group, resource = GROUP, PLURAL
            elif kind in _CORE_KINDS:
                group, resource = "", _CORE_KINDS[kind]
            else:
                raise AssertionError(f"{path.name}: teach test_rbac about client calls on {kind!r}")
            perms.add((group, resource + ("/status" if status else ""), _CLIENT_VERBS[verb]))
            if verb == "list" and _all:
                perms.add((group, resource, "list"))
    return perms


def kopf_permissions(*, clusterwide: bool, peering: bool) -> set[Perm]:
    """Permissions kopf needs for the features the operator's code uses."""
    text = "\n".join(t for _, t in _sources())
    perms: set[Perm] = set()
    if re.search(r"@kopf\.(on\.\w+|daemon|timer)\(\s*GROUP,\s*VERSION,\s*PLURAL", text):
        # Watch streams (list+watch) and finalizer/annotation patches on the main resource.
        perms |= {(GROUP, PLURAL, "list"), (GROUP, PLURAL, "watch"), (GROUP, PLURAL, "patch")}
    if re.search(r"\bkopf\.(event|info|warn|exception)\(", text):
        perms.add(("", "events", "create"))  # kopf posts events with POST only
    if clusterwide:
        # kopf's resource observer watches CRDs to notice new/changed resources (a cluster-scoped kind:
        # in namespaces mode it is not granted and kopf falls back to its start-up scan).
        perms |= {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
    if peering:
        plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
        perms |= {("kopf.dev", plural, v) for v in ("list", "watch", "patch")}
    return perms


def _granted(rules: Iterable[dict[str, Any]]) -> set[Perm]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_client_scan_finds_the_known_calls() -> None:
    """The scanner itself works: the calls the operator is known to make are found, in the modules
    the operator runs, and client-only modules are left out."""
    paths = [p for p, _ in _sources()]
    names = {p.name for p in paths}
    assert {"handlers.py", "_operator.py", "secrets.py", "reconcile.py", "_sandbox.py"} <= names
    # The user's side of the cluster adapter (console, pull, the playground) is not the operator's.
    assert not any(n.startswith("_server") or n in ("swarmctl.py", "user.py") for n in names)
    assert not any({"playground", "console"} & set(p.relative_to(PACKAGE).parts) for p in paths)
    perms = client_permissions()
    assert ("", "secrets", "get") in perms
    assert (GROUP, f"{PLURAL}/status", "patch") in perms


def test_custom_object_calls_target_our_resource_only() -> None:
    for path, text in _sources():
        for match in re.finditer(r"_custom_object\w*,\s*([^)]*)", text):
            assert match.group(1).split(",")[0].strip() == "GROUP", f"{path.name}: {match.group(0)}"


def test_kopf_features_the_rules_assume_still_exist() -> None:
    """CRD observation and the peering kinds are what kopf (the installed version) really uses."""
    from kopf._cogs.structs import references
    from kopf._core.reactor import observation

    assert "references.CRDS" in inspect.getsource(observation.resource_observer)
    assert (
        references.CRDS.group == "apiextensions.k8s.io"
        and references.CRDS.any_name == "customresourcedefinitions"
    )
    assert (references.CLUSTER_PEERINGS_K.group, references.CLUSTER_PEERINGS_K.any_name) == (
        "kopf.dev",
        "clusterkopfpeerings",
    )
    assert (references.NAMESPACED_PEERINGS_K.group, references.NAMESPACED_PEERINGS_K.any_name) == (
        "kopf.dev",
        "kopfpeerings",
    )
    assert kopf.__version__.startswith("1.")  # type: ignore[attr-defined]


@pytest.mark.parametrize("replicas", [1, 2])
def test_cluster_role_grants_exactly_what_is_used(replicas: int) -> None:
    objects = render({"replicaCount": replicas})
    (role,) = find(objects, "ClusterRole")
    expected = client_permissions() | kopf_permissions(clusterwide=True, peering=replicas > 1)
    assert _granted(role["rules"]) == expected
    # Cluster mode: the default key Secret is covered by the ClusterRole; the release record is not.
    (own,) = find(objects, "Role")
    assert own["metadata"]["namespace"] == "swarm-system"
    assert _granted(own["rules"]) == client_permissions(own=True)
    (binding,) = find(objects, "ClusterRoleBinding")
    (sa,) = find(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "swarm-system"}
    ]


@pytest.mark.parametrize("replicas", [1, 2])
def test_namespace_roles_grant_exactly_what_is_used(replicas: int) -> None:
    namespaces = ["team-a", "team-b"]
    objects = render({"replicaCount": replicas, "watch": {"mode": "namespaces", "namespaces": namespaces}})
    assert not find(objects, "ClusterRole")
    expected = client_permissions() | kopf_permissions(clusterwide=False, peering=replicas > 1)
    for ns in namespaces:
        (role,) = [r for r in find(objects, "Role") if r["metadata"]["namespace"] == ns]
        assert _granted(role["rules"]) == expected, ns
        (binding,) = [b for b in find(objects, "RoleBinding") if b["metadata"]["namespace"] == ns]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # The operator's own namespace: reading the one default-key Secret, and its release record.
    (own,) = [r for r in find(objects, "Role") if r["metadata"]["namespace"] == "swarm-system"]
    assert _granted(own["rules"]) == {("", "secrets", "get")} | client_permissions(own=True)
    assert ("", "secrets", "get") in client_permissions()
    assert own["rules"][0]["resourceNames"]


def test_own_namespace_calls_are_the_release_record_and_named() -> None:
    """What only the operator's namespace grants: the release record's ConfigMap, by name wherever
    RBAC can name it (create cannot be)."""
    assert client_permissions(own=True) == {("", "configmaps", v) for v in ("get", "patch", "create")}
    for objects in (render({}), render({"watch": {"mode": "namespaces", "namespaces": ["a"]}})):
        (own,) = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-own")]
        for rule in own["rules"]:
            if rule["resources"] == ["configmaps"] and rule["verbs"] != ["create"]:
                assert rule["resourceNames"] == ["swarm-swarm-operator-released"]


def test_no_wildcards_and_patch_on_peering_is_scoped_to_our_object() -> None:
    for values in (
        {"replicaCount": 2},
        {"replicaCount": 2, "watch": {"mode": "namespaces", "namespaces": ["a"]}},
    ):
        objects = render(values)
        for role in find(objects, "ClusterRole") + find(objects, "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                if rule["apiGroups"] == ["kopf.dev"] and "patch" in rule["verbs"]:
                    assert rule["resourceNames"] == ["swarm-swarm-operator"]


def test_rbac_can_be_left_to_the_user() -> None:
    objects = render({"rbac": {"create": False}})
    assert not {o["kind"] for o in objects} & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
