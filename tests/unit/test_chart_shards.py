"""The chart's ``sharding.shards``: N Deployments, each a shard the operator accepts (its settings and
arguments parsed by the operator's own code), with nothing shared between shards — names, pod
selectors, operator ids, peering objects, released-sandbox records — and RBAC for every shard's record."""

from __future__ import annotations

import shlex
from typing import Any

import kubernetes_validate
import pytest
from test_chart_tools import CHART, find, helm, render

from swarm_operator import cli
from swarm_operator.config import Settings
from swarm_operator.lifecycle.shard import ShardPlan

K8S_VERSION = "1.33.0"


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
    env["SWARM_NAMESPACE"] = deployment["metadata"]["namespace"]  # a fieldRef in the pod
    return env


def _args(deployment: dict[str, Any]) -> Any:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    try:
        return cli._build_parser().parse_args(["run", *container["args"]])
    except SystemExit as exc:
        raise AssertionError(f"rejected: {shlex.join(container['args'])}") from exc


def test_one_shard_is_the_plain_single_deployment() -> None:
    (deployment,) = find(render({}), "Deployment")
    assert deployment["metadata"]["name"] == "swarm-swarm-operator"
    env = _env(deployment)
    assert "SWARM_SHARD" not in env and env["SWARM_OPERATOR_ID"] == "swarm-swarm-operator"
    assert Settings.from_env(env).shard == ""


@pytest.mark.parametrize("standby", [1, 2])
def test_three_shards_render_three_deployments_the_operator_accepts(standby: int) -> None:
    objects = render({"sharding": {"shards": 3, "labelSelector": "team=a"}, "replicaCount": standby})
    deployments = sorted(find(objects, "Deployment"), key=lambda d: d["metadata"]["name"])
    assert [d["metadata"]["name"] for d in deployments] == [f"swarm-swarm-operator-{i}" for i in range(3)]
    plans, ids, selectors, peerings = [], set(), [], set()
    for deployment in deployments:
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
        settings = Settings.from_env(_env(deployment))
        plans.append(ShardPlan.parse(settings.shard))
        ids.add(settings.operator_id)
        match = deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= match.items()
        selectors.append(match)
        args = _args(deployment)
        assert args.selector == "team=a" and deployment["spec"]["replicas"] == standby
        peerings.add(args.peering)
    assert plans == [ShardPlan(i, 3) for i in range(3)]
    assert ids == {f"swarm-swarm-operator-{i}" for i in range(3)}
    # No Deployment's pod selector matches another's pods.
    for i, match in enumerate(selectors):
        for j, other in enumerate(deployments):
            if i != j:
                assert not other["spec"]["template"]["metadata"]["labels"].items() >= match.items()
    if standby == 1:
        assert peerings == {None} and not find(objects, "ClusterKopfPeering")
    else:  # a peering object per shard: shards never pause each other, standbys wait for theirs
        assert peerings == {f"swarm-swarm-operator-{i}" for i in range(3)}
        assert {o["metadata"]["name"] for o in find(objects, "ClusterKopfPeering")} == peerings


def test_namespaces_mode_shards_get_their_own_released_records_and_peerings() -> None:
    objects = render(
        {"sharding": {"shards": 2}, "replicaCount": 2, "watch": {"mode": "namespaces", "namespaces": ["t"]}}
    )
    (own,) = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-own")]
    (record,) = [rule for rule in own["rules"] if rule.get("verbs") == ["get", "patch"]]
    assert record["resourceNames"] == [f"swarm-swarm-operator-{i}-released" for i in range(2)]
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in find(objects, "KopfPeering")} == {
        ("t", "swarm-swarm-operator-0"),
        ("t", "swarm-swarm-operator-1"),
    }
    for deployment in find(objects, "Deployment"):
        assert _args(deployment).namespace == ["t"]


def test_long_release_names_keep_operator_ids_within_63_characters() -> None:
    objects = render({"sharding": {"shards": 12}, "fullnameOverride": "x" * 63})
    ids = {_env(d)["SWARM_OPERATOR_ID"] for d in find(objects, "Deployment")}
    assert len(ids) == 12 and all(len(i) <= 63 for i in ids)
    for deployment in find(objects, "Deployment"):
        Settings.from_env(_env(deployment))  # the operator accepts every id


@pytest.mark.parametrize("shards", [0, 65, "3"])
def test_the_schema_refuses_a_shard_count_out_of_range(shards: Any) -> None:
    result = helm(
        "template",
        "x",
        str(CHART),
        "--set-json",
        f"sharding.shards={shards!r}".replace("'", '"'),
        check=False,
    )
    assert result.returncode != 0 and "shards" in result.stderr


def test_helm_lint_is_clean_with_shards() -> None:
    result = helm(
        "lint", str(CHART), "--strict", "--set", "sharding.shards=3", "--set", "replicaCount=2", check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout
