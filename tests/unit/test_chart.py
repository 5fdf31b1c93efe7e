"""The Helm chart: lint, schema strictness, every install mode rendered and validated offline, restricted
Pod Security in every mode, settings the operator accepts, options its CLI parses, and the CRD and
examples applied with kubectl to the Kubernetes emulator."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_chart_tools import CHART, ROOT, find, helm, kubectl, render

from swarm_operator import cli
from swarm_operator.config import Settings

#: Values for each supported way of installing; every test below runs against all of them.
MODES: dict[str, dict[str, Any]] = {
    "cluster": {},
    "namespaces": {"watch": {"mode": "namespaces", "namespaces": ["team-a", "team-b"]}},
    "cluster-standby": {"replicaCount": 2},
    "namespaces-standby": {
        "replicaCount": 3,
        "watch": {"mode": "namespaces", "namespaces": ["team-a", "swarm-system"]},
    },
    "shard-by-label": {"sharding": {"labelSelector": "claudeswarm.io/shard=a"}},
    "everything": {
        "e2b": {
            "apiKey": {"value": "e2b_" + "0" * 40},
            "apiUrl": "https://api.e2b.example",
            "sandboxUrl": "https://sandbox.e2b.example",
            "domain": "e2b.example",
        },
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "spendRateUsdPerHour": 2.5},
        },
        "grafana": {
            "dashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "Swarm"},
            }
        },
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        },
        "crds": {"templated": True},
        "image": {"digest": "sha256:" + "a" * 64},
        "settings": {
            "defaultTemplate": "claude-swarm",
            "leaseSeconds": 900,
            "leaseRenewSeconds": 1000000,
            "orphanTimeoutSeconds": 7200,
            "sweepIntervalSeconds": 60,
            "sweepGraceSeconds": 0.5,
            "readyTimeoutSeconds": 90.5,
            "initAttempts": 5,
            "initBackoffSeconds": 1,
            "deleteGraceSeconds": 10,
            "deleteTimeoutSeconds": 120,
            "controlTimeoutSeconds": 30,
            "commandTimeoutSeconds": 600,
            "kubeTimeoutSeconds": 20,
            "retryDelaySeconds": 2,
            "maxRetryDelaySeconds": 600,
            "creationsPerMinute": 5,
            "creationsPerHour": 100,
            "maxSandboxesPerNamespace": 20,
            "logFormat": "text",
            "logLevel": "DEBUG",
            "defaultKeyNamespaces": "default,team-*",
            "defaultKeyTemplates": "claude-swarm*",
        },
        "admissionPolicy": {"enabled": True, "validationActions": ["Deny", "Audit"]},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    },
}
#: Kinds served by CRDs (no offline schema in kubernetes-validate); checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}
K8S_VERSION = "1.33.0"

mode = pytest.mark.parametrize("values", MODES.values(), ids=list(MODES))


def _write(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_chart_crd_is_byte_identical_to_the_generated_one() -> None:
    assert (CHART / "crds" / "swarmsandbox.yaml").read_bytes() == (
        ROOT / "crds" / "swarmsandbox.yaml"
    ).read_bytes()
    assert [p.name for p in (CHART / "crds").iterdir()] == ["swarmsandbox.yaml"]


@mode
def test_helm_lint_is_clean(values: dict[str, Any], tmp_path: Path) -> None:
    result = helm("lint", str(CHART), "--strict", "-f", str(_write(tmp_path, values)), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    "typo",
    [
        {"replicas": 2},  # top level: replicaCount
        {"metrics": {"serviceMonitor": {"enbled": True}}},
        {"settings": {"leaseSecond": 60}},  # would become an unknown SWARM_* name
        {"settings": {"leaseSeconds": 5}},  # below the operator's own minimum
        {"watch": {"mode": "namespace"}},
        {"watch": {"mode": "namespaces", "namespaces": []}},
        {"extraEnv": [{"name": "SWARM_LEASE_SECONDS", "value": "60"}]},
        {"image": {"digest": "latest"}},
    ],
)
def test_values_typo_fails_lint(typo: dict[str, Any], tmp_path: Path) -> None:
    result = helm("lint", str(CHART), "--strict", "-f", str(_write(tmp_path, typo)), check=False)
    assert result.returncode != 0, result.stdout


def test_schema_is_closed_everywhere() -> None:
    """Every object in values.schema.json with fixed properties forbids others, so typos cannot hide."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_ = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and path.split(".")[-1] != "extraEnv[]":
                if node.get("additionalProperties") is not False:
                    open_.append(path or "<root>")
            for key, value in node.get("properties", {}).items():
                walk(value, f"{path}.{key}".lstrip("."))
            if "items" in node:
                walk(node["items"], f"{path}[]")

    walk(schema, "")
    assert open_ == []


def test_schema_settings_are_exactly_the_operator_settings() -> None:
    """The chart's ``settings`` map onto SWARM_* names; those it sets itself are not user settings."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    chart_owned = {
        "namespace",
        "operator_id",
        "default_api_key_secret",
        "default_api_key_secret_key",
        "metrics_port",
        "shard",  # from sharding.shards, one value per Deployment
    }
    snake = {
        "".join("_" + c.lower() if c.isupper() else c for c in name)
        for name in schema["properties"]["settings"]["properties"]
    }
    assert snake == set(Settings.model_fields) - chart_owned


@mode
def test_rendered_manifests_validate_strictly(values: dict[str, Any]) -> None:
    objects = render(values, include_crds=True)
    problems = []
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert problems == []
    assert {o["kind"] for o in objects} >= {
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "Service",
    }


@mode
def test_restricted_pod_security(values: dict[str, Any]) -> None:
    objects = render(values)
    (deployment,) = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "add" not in sc["capabilities"]
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert all("hostPath" not in v for v in pod.get("volumes", []))


@mode
def test_deployment_shape(values: dict[str, Any]) -> None:
    objects = render(values)
    (deployment,) = find(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _operator_container(objects)
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]]
    assert liveness == f"--liveness=http://0.0.0.0:{port}/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    peering = [a for a in container["args"] if a.startswith("--peering=")]
    assert bool(peering) == (values.get("replicaCount", 1) > 1)
    assert ("--standalone" in container["args"]) != bool(peering)


@mode
def test_every_swarm_variable_is_accepted_by_the_operator(values: dict[str, Any]) -> None:
    """The operator refuses to start on an unknown or malformed SWARM_* variable: render, then parse."""
    env = {}
    for item in _operator_container(render(values))["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["name"] == "SWARM_NAMESPACE":
            assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
            env[item["name"]] = "swarm-system"
    settings = Settings.from_env(env)
    for key, value in values.get("settings", {}).items():
        field = "".join("_" + c.lower() if c.isupper() else c for c in key)
        assert getattr(settings, field) == value, key
    assert settings.namespace == "swarm-system"


@mode
def test_rendered_arguments_parse_with_the_operator_cli(values: dict[str, Any]) -> None:
    container = _operator_container(render(values))
    assert "command" not in container  # the image's entrypoint is `swarm-operator run`
    parser = cli._build_parser()
    try:
        args = parser.parse_args(["run", *container["args"]])
    except SystemExit as exc:
        raise AssertionError(f"rejected: {shlex.join(container['args'])}") from exc
    watch = values.get("watch", {})
    if watch.get("mode") == "namespaces":
        assert args.namespace == watch["namespaces"] and not args.all_namespaces
    else:
        assert args.all_namespaces and not args.namespace
    # A label shard reaches the operator as its --selector, verbatim; no shard, no selector.
    assert args.selector == (values.get("sharding", {}).get("labelSelector") or None)


def test_namespaces_mode_grants_no_cluster_roles() -> None:
    objects = render(MODES["namespaces"])
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(objects, "Role")}
    assert roles == {
        ("team-a", "swarm-swarm-operator"),
        ("team-b", "swarm-swarm-operator"),
        ("swarm-system", "swarm-swarm-operator-own"),
    }
    (own,) = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-own")]
    assert own["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["swarm-swarm-operator-e2b"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["swarm-swarm-operator-released"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ]


def test_default_key_secret_existing_or_created() -> None:
    created = render({"e2b": {"apiKey": {"value": "e2b_x", "secretKey": "k"}}})
    (secret,) = find(created, "Secret")
    env = {e["name"]: e.get("value") for e in _operator_container(created)["env"]}
    assert env["SWARM_DEFAULT_API_KEY_SECRET"] == secret["metadata"]["name"]
    assert env["SWARM_DEFAULT_API_KEY_SECRET_KEY"] == "k" and set(secret["data"]) == {"k"}

    existing = render({"e2b": {"apiKey": {"existingSecret": "mine"}}})
    assert not find(existing, "Secret")
    env = {e["name"]: e.get("value") for e in _operator_container(existing)["env"]}
    assert env["SWARM_DEFAULT_API_KEY_SECRET"] == "mine"
    both = helm(
        "template",
        "x",
        str(CHART),
        "--set",
        "e2b.apiKey.existingSecret=a",
        "--set",
        "e2b.apiKey.value=b",
        check=False,
    )
    assert both.returncode != 0 and "not both" in both.stderr


def test_templated_crd_is_the_same_crd_kept_on_uninstall() -> None:
    objects = render({"crds": {"templated": True}})
    (crd,) = find(objects, "CustomResourceDefinition")
    shipped = yaml.safe_load((CHART / "crds" / "swarmsandbox.yaml").read_text())
    assert crd["spec"] == shipped["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert int(crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0
    assert not find(render({}), "CustomResourceDefinition")  # crds/ is not part of the templates


def test_peering_objects_exist_for_every_served_scope() -> None:
    cluster = render(MODES["cluster-standby"])
    assert [o["metadata"]["name"] for o in find(cluster, "ClusterKopfPeering")] == ["swarm-swarm-operator"]
    assert [o["metadata"]["name"] for o in find(cluster, "CustomResourceDefinition")] == [
        "clusterkopfpeerings.kopf.dev"
    ]
    namespaced = render(MODES["namespaces-standby"])
    assert {o["metadata"]["namespace"] for o in find(namespaced, "KopfPeering")} == {"team-a", "swarm-system"}
    assert not find(render({}), "ClusterKopfPeering") and not find(render({}), "KopfPeering")


def test_side_by_side_shards_do_not_collide() -> None:
    """Two releases in one namespace: distinct names for every object, peering and operator id."""
    a = render(
        {"watch": {"mode": "namespaces", "namespaces": ["team-a"]}, "replicaCount": 2}, release="shard-a"
    )
    b = render(
        {"watch": {"mode": "namespaces", "namespaces": ["team-b"]}, "replicaCount": 2}, release="shard-b"
    )
    key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])  # noqa: E731
    shared = {key(o) for o in a} & {key(o) for o in b}
    # Only kopf's peering CRD is shared: identical in both, kept on uninstall.
    assert shared == {("CustomResourceDefinition", None, "kopfpeerings.kopf.dev")}
    ids = [
        next(e["value"] for e in _operator_container(x)["env"] if e["name"] == "SWARM_OPERATOR_ID")
        for x in (a, b)
    ]
    assert ids[0] != ids[1]


def test_monitoring_objects() -> None:
    objects = render(MODES["everything"])
    (service,) = find(objects, "Service")
    (monitor,) = find(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # Series such as swarm_sandboxes{namespace} name the resource's namespace: the scrape must keep
    # it, and alerts select the operator by job only (not by the operator's own namespace).
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    (rule,) = find(objects, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "SwarmOperatorDown",
        "SwarmSandboxFailed",
        "SwarmSandboxDegraded",
        "SwarmReconcileErrorsHigh",
        "SwarmOrphanSandboxesKilled",
        "SwarmSpendRateHigh",
        "SwarmSandboxStuckStarting",
        "SwarmCreationsBlocked",
        "SwarmUntrackedSandboxes",
    }
    job = service["metadata"]["name"]
    assert all(f'job="{job}"' in r["expr"] for r in alerts.values())
    assert not any("namespace=" in r["expr"] for r in alerts.values())


def test_network_policy_allows_only_what_the_operator_needs() -> None:
    objects = render(MODES["everything"])
    (policy,) = find(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for r in spec["ingress"] for p in r["ports"]] == ["metrics"]
    egress_ports = sorted({p["port"] for r in spec["egress"] for p in r["ports"]})
    assert egress_ports == [53, 443, 6443]
    cidrs = [t["ipBlock"]["cidr"] for r in spec["egress"] for t in r.get("to", []) if "ipBlock" in t]
    assert "10.0.0.1/32" in cidrs


# ---- the rendered CRD and the examples, applied with kubectl to the Kubernetes emulator ----


@pytest.fixture()
def kube_emulator_crd_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Serve the CRD exactly as ``helm template --include-crds`` renders it."""
    folder = tmp_path_factory.mktemp("rendered-crds")
    crds = [o for o in render(include_crds=True) if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 1
    (folder / "crd.yaml").write_text(yaml.safe_dump(crds[0]))
    return [folder]


def test_examples_apply_to_the_emulator(kube_emulator: Any) -> None:
    for name in ("secrets.yaml", "minimal.yaml", "full.yaml"):
        docs = [d for d in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if d]
        for doc in docs:
            kubectl(kube_emulator.kubeconfig, "apply", "--validate=false", "-f", "-", input=json.dumps(doc))
    listed = json.loads(kubectl(kube_emulator.kubeconfig, "get", "swarmsandboxes", "-o", "json"))
    assert {i["metadata"]["name"] for i in listed["items"]} == {"hello-swarm", "full-swarm"}
    # The API server defaulted what the minimal example left out.
    (minimal,) = [i for i in listed["items"] if i["metadata"]["name"] == "hello-swarm"]
    assert minimal["spec"]["agents"] == 4 and "deletionPolicy" in minimal["spec"]


def test_alerts_use_metrics_the_operator_exports() -> None:
    """Every series an alert reads is defined in swarm_operator.metrics (or is Prometheus's own ``up``)."""
    source = "".join(p.read_text() for p in (ROOT / "operator" / "swarm_operator" / "metrics").glob("*.py"))
    exported = set(re.findall(r'"((?:swarm|controller_runtime)_[a-z_]+)"', source))
    (rule,) = find(render(MODES["everything"]), "PrometheusRule")
    used = {
        name
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        for name in re.findall(r"\b((?:swarm|controller_runtime)_[a-z_]+)\{", r["expr"])
    }
    assert used and used <= exported, used - exported


def test_grafana_dashboard_configmap_only_when_enabled() -> None:
    """Off by default; when on, one ConfigMap labelled for Grafana's sidecar carrying exactly the
    generated dashboard (tests/unit/test_dashboard.py checks that file against its generator)."""
    for values in MODES.values():
        if not values.get("grafana", {}).get("dashboard", {}).get("enabled"):
            assert not [
                c for c in find(render(values), "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
            ]
    objects = render({"grafana": {"dashboard": {"enabled": True}}})
    (configmap,) = find(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "swarm-system"
    shipped = (CHART / "dashboards" / "swarm-operator.json").read_text()
    assert configmap["data"] == {"swarm-operator.json": shipped.rstrip("\n")}
    assert json.loads(configmap["data"]["swarm-operator.json"])["uid"] == "swarm-operator"
    (moved,) = find(render(MODES["everything"]), "ConfigMap")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Swarm"}
    relabelled = render({"grafana": {"dashboard": {"enabled": True, "labels": {"dashboards": "swarm"}}}})
    assert find(relabelled, "ConfigMap")[0]["metadata"]["labels"]["dashboards"] == "swarm"


def test_spend_alert_threshold_comes_from_values() -> None:
    (rule,) = find(render(MODES["everything"]), "PrometheusRule")
    (alert,) = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "SwarmSpendRateHigh"]
    assert alert["expr"].rstrip().endswith("> 2.5")
    assert "swarm_sandbox_rate_usd_per_hour{" in alert["expr"]


def test_budget_and_cost_through_kubectl(kube_emulator: Any) -> None:
    """A bad budget is a 422 naming the field; a good one is stored; the Cost column shows the
    ledger's figure once the operator writes status.cost."""
    from datetime import datetime, timedelta

    from swarm_operator.cost import Prices, Size, accrue

    swarm = {
        "apiVersion": "claudeswarm.io/v1alpha1",
        "kind": "SwarmSandbox",
        "metadata": {"name": "capped", "namespace": "default"},
        "spec": {"budget": {"maxUSD": -1}},
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubectl"),
            "--kubeconfig",
            str(kube_emulator.kubeconfig),
            "apply",
            "--validate=false",
            "-f",
            "-",
        ],
        input=json.dumps(swarm),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "spec.budget.maxUSD" in result.stderr, result.stderr
    swarm["spec"]["budget"] = {"maxUSD": 0.5}
    kubectl(kube_emulator.kubeconfig, "apply", "--validate=false", "-f", "-", input=json.dumps(swarm))
    stored = json.loads(kubectl(kube_emulator.kubeconfig, "get", "swarm", "capped", "-o", "json"))
    assert stored["spec"]["budget"] == {"maxUSD": 0.5, "action": "Suspend"}  # defaulted by the schema

    start = datetime(2026, 11, 29, 12, tzinfo=UTC)
    ledger = accrue(None, start, "Running", Size(2, 512), Prices())
    ledger = accrue(ledger, start + timedelta(hours=1), "Running", Size(2, 512), Prices())
    patch = {"status": {"cost": ledger.model_dump(by_alias=True, mode="json", exclude_none=True)}}
    kubectl(
        kube_emulator.kubeconfig,
        "patch",
        "swarm",
        "capped",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    header, row = kubectl(kube_emulator.kubeconfig, "get", "swarm", "capped").splitlines()
    assert row[header.index("COST") :].split()[0] == "$0.1089"  # by offset: empty columns print nothing


def test_the_stuck_starting_alert_waits_longer_than_the_init_bound() -> None:
    """Issue 16: an alert for resources Creating/Initializing past the bound the README states, for
    QuotaExceeded/RateLimited persisting, and for sandboxes no resource tracks."""
    from swarm_operator.config import Settings
    from swarm_operator.lifecycle import bounds

    (rule,) = find(render(MODES["everything"]), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    starting = alerts["SwarmSandboxStuckStarting"]
    assert 'phase=~"Creating|Initializing"' in starting["expr"]
    minutes = int(starting["for"].rstrip("m"))
    assert minutes * 60 > bounds.init_bound_seconds(Settings())
    assert 'outcome=~"QuotaExceeded|RateLimited"' in alerts["SwarmCreationsBlocked"]["expr"]
    assert "swarm_untracked_sandboxes{" in alerts["SwarmUntrackedSandboxes"]["expr"]


# -- The tenancy ValidatingAdmissionPolicy (admissionPolicy.enabled) ----------------------------------

_TENANCY_VALUES: dict[str, Any] = {
    "admissionPolicy": {"enabled": True},
    "settings": {"defaultKeyNamespaces": "default, team-*", "defaultKeyTemplates": "claude-swarm*,x.y"},
}


def _policy(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render(values)
    (policy,) = find(objects, "ValidatingAdmissionPolicy")
    (binding,) = find(objects, "ValidatingAdmissionPolicyBinding")
    return policy, binding


@pytest.mark.parametrize(
    "values",
    [
        _TENANCY_VALUES,
        {"admissionPolicy": {"enabled": True}},
        {
            **_TENANCY_VALUES,
            "watch": {"mode": "namespaces", "namespaces": ["team-a"]},
            "admissionPolicy": {"enabled": True, "validationActions": ["Warn", "Audit"]},
        },
    ],
    ids=["lists", "operator-defaults", "namespaces-mode-warn"],
)
def test_admission_policy_renders_and_validates(values: dict[str, Any]) -> None:
    policy, binding = _policy(values)
    for obj in (policy, binding):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["swarmsandboxes"]
    watch = values.get("watch", {})
    if watch.get("mode") == "namespaces":
        (selector,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert selector["values"] == [*watch["namespaces"], "swarm-system"]
        assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
    else:
        assert "matchResources" not in binding["spec"] and binding["spec"]["validationActions"] == ["Deny"]
    assert not find(render({}), "ValidatingAdmissionPolicy")  # off unless asked for


def _admits(
    policy: dict[str, Any], namespace: str, spec: dict[str, Any], old_spec: dict[str, Any] | None = None
) -> tuple[bool, list[str]]:
    """Evaluate the policy as the API server does (match conditions, variables, validations) with
    a real CEL interpreter: (admitted, the messages of the validations that failed)."""
    import celpy

    env = celpy.Environment()

    def evaluate(expression: str, activation: dict[str, Any]) -> Any:
        return env.program(env.compile(expression)).evaluate(activation)

    obj = {
        "apiVersion": "claudeswarm.io/v1alpha1",
        "kind": "SwarmSandbox",
        "metadata": {"name": "s", "namespace": namespace},
        "spec": spec,
    }
    old = None if old_spec is None else {**obj, "spec": old_spec}
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel(
            {"namespace": namespace, "operation": "CREATE" if old is None else "UPDATE"}
        ),
    }
    if not all(evaluate(c["expression"], activation) for c in policy["spec"]["matchConditions"]):
        return True, []
    variables = {v["name"]: evaluate(v["expression"], activation) for v in policy["spec"]["variables"]}
    activation["variables"] = celpy.celtypes.MapType(
        {celpy.celtypes.StringType(k): v for k, v in variables.items()}
    )
    failed = []
    for rule in policy["spec"]["validations"]:
        if not evaluate(rule["expression"], activation):
            failed.append(
                str(evaluate(rule["messageExpression"], activation))
                if "messageExpression" in rule
                else rule["message"]
            )
    return not failed, failed


_OWN_KEY = {"e2b": {"apiKeySecretRef": {"name": "team-key", "key": "api-key"}}}
_SPECS: dict[str, dict[str, Any]] = {
    "minimal": {"agents": 1},
    "own key": {"agents": 1, **_OWN_KEY},
    "orphan": {"agents": 1, "deletionPolicy": "Orphan"},
    "orphan own key": {"agents": 1, "deletionPolicy": "Orphan", **_OWN_KEY},
    "delete": {"agents": 1, "deletionPolicy": "Delete"},
    "default template named": {"agents": 1, "template": "anthropic-claude-code"},
    "allowed glob": {"agents": 1, "template": "claude-swarm-v3"},
    "literal dot": {"agents": 1, "template": "x.y"},
    "dot is not any": {"agents": 1, "template": "xzy"},
    "glob is anchored": {"agents": 1, "template": "team/claude-swarm"},
    "other template": {"agents": 1, "template": "gpu-xl"},
    "other template own key": {"agents": 1, "template": "gpu-xl", **_OWN_KEY},
}
_NAMESPACES = ["default", "team-a", "teamb", "other", "swarm-system", "xdefault"]


@pytest.mark.parametrize(
    "values", [_TENANCY_VALUES, {"admissionPolicy": {"enabled": True}}], ids=["lists", "operator-defaults"]
)
def test_admission_policy_cel_agrees_with_the_operator(values: dict[str, Any]) -> None:
    """On every namespace x spec, the policy admits exactly what the operator serves
    (lifecycle.tenancy.refusal with the settings the chart gives it), and says the same reason."""
    from swarm_operator.lifecycle.tenancy import refusal
    from swarm_operator.model import SwarmSandboxSpec

    policy, _ = _policy(values)
    env = {e["name"]: e["value"] for e in _operator_container(render(values))["env"] if "value" in e}
    settings = Settings.from_env({**env, "SWARM_NAMESPACE": "swarm-system"})
    verdicts = {}
    for namespace in _NAMESPACES:
        for label, spec in _SPECS.items():
            refused = refusal(
                namespace, SwarmSandboxSpec.from_body({"agent": {"command": "x"}, **spec}), settings
            )
            admitted, messages = _admits(policy, namespace, spec)
            assert admitted == (refused is None), (namespace, label, messages, refused)
            if refused is not None:
                assert messages[0].startswith(f"{refused.reason}: "), (namespace, label, messages)
            verdicts[namespace, label] = admitted
    # The verdicts are not trivial either way.
    assert verdicts["default", "minimal"] and not verdicts["swarm-system", "own key"]
    assert not verdicts["default", "orphan"] and verdicts["default", "orphan own key"]
    assert not verdicts["other", "minimal"] and verdicts["other", "own key"]
    assert not verdicts["default", "other template"] and verdicts["default", "other template own key"]
    if values is _TENANCY_VALUES:
        assert verdicts["team-a", "minimal"] and not verdicts["teamb", "minimal"]
        assert verdicts["default", "literal dot"] and not verdicts["default", "dot is not any"]
        assert verdicts["default", "allowed glob"] and not verdicts["default", "glob is anchored"]


def test_admission_policy_skips_updates_that_leave_the_spec_alone() -> None:
    """A refused resource made before the policy can still lose its finalizer (kopf patches
    metadata); a spec change is checked like a create."""
    policy, _ = _policy(_TENANCY_VALUES)
    orphan = {"agents": 1, "deletionPolicy": "Orphan"}
    assert _admits(policy, "default", orphan, old_spec=orphan) == (True, [])
    admitted, messages = _admits(policy, "default", orphan, old_spec={"agents": 1})
    assert not admitted and messages[0].startswith("OrphanNotAllowed: ")
