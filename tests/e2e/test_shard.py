"""Three operator processes as shards 0/3, 1/3, 2/3 against one cluster and one E2B.

Nobody labels anything by hand: the shards label each new SwarmSandbox with sha256(uid) % 3 (the
rule is recomputed here, independently of the operator's code), each resource is served by exactly
one process (one sandbox ever, tagged with that process's operator id; only that process's log
speaks of it), and a shard killed with SIGKILL leaves its resources to their leases: the others
neither write them nor replace their sandboxes, until it returns and resumes them.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from typing import Any

import pytest
from tests.e2e.conftest import GROUP, PLURAL, VERSION, Cluster, OperatorProcess, swarm, wait_for

pytestmark = pytest.mark.e2e

SHARDS = 3
LABEL = "claudeswarm.io/shard"
LEASE = {"SWARM_LEASE_SECONDS": "6", "SWARM_LEASE_RENEW_SECONDS": "1"}


def _expected_shard(uid: str) -> int:
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") % SHARDS


def _shard(start_operator: Any, index: int) -> OperatorProcess:
    return start_operator(SWARM_SHARD=f"{index}/{SHARDS}", SWARM_OPERATOR_ID=f"e2e-{index}", **LEASE)


def _meta(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.get("default", name)
    assert body is not None, name
    return dict(body["metadata"])


def _sandboxes_by_uid(e2b: Any, *, alive_only: bool) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for sandbox in e2b.inspect(include_dead=not alive_only):
        found.setdefault(sandbox["metadata"].get("claudeswarm.io/uid", ""), []).append(sandbox)
    return found


def _speakers(operators: list[OperatorProcess]) -> dict[str, set[int]]:
    """uid -> the shards whose log has a line about that resource, the labeller's lines aside."""
    speakers: dict[str, set[int]] = {}
    for index, operator in enumerate(operators):
        for line in operator.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = str(record.get("message", ""))
            if record.get("uid") and not message.startswith(("labelled ", "shard label")):
                speakers.setdefault(record["uid"], set()).add(index)
    return speakers


def _create_until_every_shard_has(cluster: Cluster, prefix: str, each: int) -> dict[str, str]:
    """Apply unlabelled resources until every shard's hash got ``each`` of them: name -> uid."""
    uids: dict[str, str] = {}
    counts = dict.fromkeys(range(SHARDS), 0)
    while min(counts.values()) < each and len(uids) < 30:
        name = f"{prefix}-{len(uids)}"
        cluster.apply(swarm(name, agents=1))
        uid = _meta(cluster, name)["uid"]
        uids[name] = uid
        counts[_expected_shard(uid)] += 1
    assert min(counts.values()) >= each, counts
    return uids


def test_three_shards_label_serve_once_and_leave_a_dead_shards_resources_alone(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    operators = [_shard(start_operator, i) for i in range(SHARDS)]
    uids = _create_until_every_shard_has(cluster, "s", each=2)

    # Labelled without anyone labelling, by the hash; then each served to Ready.
    for name, uid in uids.items():
        wait_for(
            lambda n=name: (cluster.get("default", n) or {}).get("metadata", {}).get("labels", {}).get(LABEL),
            20,
            message=f"{name} labelled",
        )
        labels = _meta(cluster, name)["labels"]
        assert labels[LABEL] == str(_expected_shard(uid)), name
    for name in uids:
        cluster.wait_condition("default", name, "Ready", timeout=120)

    # Exactly one owner each: one sandbox ever made for it, by the owning shard's process.
    ever = _sandboxes_by_uid(e2b, alive_only=False)
    for uid in uids.values():
        assert len(ever.get(uid, [])) == 1, (uid, ever.get(uid))
        assert ever[uid][0]["metadata"]["claudeswarm.io/operator"] == f"e2e-{_expected_shard(uid)}"
    speakers = _speakers(operators)
    for uid in uids.values():
        assert speakers.get(uid) == {_expected_shard(uid)}, (uid, speakers.get(uid))
    for name in uids:
        body = cluster.get("default", name) or {}
        assert body["metadata"]["finalizers"] == ["claudeswarm.io/finalizer"]

    # Shard 1 dies. Its resources are not served by the others: untouched (same resourceVersion),
    # their sandboxes not renewed, so they end at their 6 s lease; the other shards' live on.
    dead = 1
    mine = {n: u for n, u in uids.items() if _expected_shard(u) == dead}
    others = {n: u for n, u in uids.items() if _expected_shard(u) != dead}
    old_sandbox = {n: cluster.status("default", n)["sandbox"]["id"] for n in mine}
    operators[dead].proc.send_signal(signal.SIGKILL)
    operators[dead].proc.wait(10)
    versions = {n: _meta(cluster, n)["resourceVersion"] for n in mine}
    wait_for(
        lambda: not any(_sandboxes_by_uid(e2b, alive_only=True).get(u) for u in mine.values()),
        20,
        message="the dead shard's sandboxes ended at their lease",
    )
    # A new resource that hashes to the dead shard: labelled by the living, served by nobody.
    late = _create_one_for(cluster, dead)
    wait_for(
        lambda: (cluster.get("default", late) or {}).get("metadata", {}).get("labels", {}).get(LABEL),
        20,
        message="late resource labelled",
    )
    time.sleep(3)  # several lease renewals and watch events for the living shards to misbehave in
    alive = _sandboxes_by_uid(e2b, alive_only=True)
    assert all(len(alive.get(u, [])) == 1 for u in others.values()), "living shards' sandboxes"
    assert not any(alive.get(u) for u in mine.values()), "nobody replaced the dead shard's sandboxes"
    for name, version in versions.items():
        assert _meta(cluster, name)["resourceVersion"] == version, name
    late_body = cluster.get("default", late) or {}
    assert late_body["metadata"]["labels"][LABEL] == str(dead)
    assert not late_body.get("status") and not late_body["metadata"].get("finalizers")
    assert not alive.get(late_body["metadata"]["uid"])

    # It returns: it resumes its resources (a new sandbox each, the expired one replaced) and
    # serves the one labelled for it meanwhile.
    operators.append(_shard(start_operator, dead))
    for name in [*mine, late]:
        cluster.wait_condition("default", name, "Ready", timeout=120)
        wait_for(
            lambda n=name: cluster.status("default", n).get("sandbox", {}).get("id") != old_sandbox.get(n),
            60,
            message=f"{name} on a new sandbox",
        )
    alive = _sandboxes_by_uid(e2b, alive_only=True)
    for uid in [*uids.values(), late_body["metadata"]["uid"]]:
        assert len(alive.get(uid, [])) == 1, uid
        assert alive[uid][0]["metadata"]["claudeswarm.io/operator"] == f"e2e-{_expected_shard(uid)}"


def _create_one_for(cluster: Cluster, shard: int) -> str:
    """Apply resources until one's uid hashes to ``shard``; delete the others; its name."""
    for attempt in range(20):
        name = f"late-{attempt}"
        cluster.apply(swarm(name, agents=1))
        uid = _meta(cluster, name)["uid"]
        if _expected_shard(uid) == shard:
            return name
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    raise AssertionError(f"no uid hashed to shard {shard} in 20 tries")


def test_a_label_naming_no_shard_is_reported_and_never_rewritten(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    for index in range(SHARDS):
        _shard(start_operator, index)
    manifest = swarm("stray", agents=1)
    manifest["metadata"]["labels"] = {LABEL: "7"}
    cluster.apply(manifest)
    uid = _meta(cluster, "stray")["uid"]

    def warned() -> list[Any]:
        return [e for e in cluster.events("default", "stray") if e.reason == "ShardLabelInvalid"]

    (event,) = wait_for(warned, 20, message="ShardLabelInvalid event")
    assert event.type == "Warning" and f"{LABEL}=7" in event.message
    time.sleep(2)
    body = cluster.get("default", "stray") or {}
    assert body["metadata"]["labels"][LABEL] == "7" and not body.get("status")
    assert not body["metadata"].get("finalizers") and not _sandboxes_by_uid(e2b, alive_only=True).get(uid)
    assert len(warned()) == 1  # one shard reports it, once

    # Removing the label hands it to the shards: labelled by its hash, served, Ready.
    cluster.kubectl("label", "swarm", "stray", f"{LABEL}-")
    cluster.wait_condition("default", "stray", "Ready", timeout=120)
    labels = (cluster.get("default", "stray") or {})["metadata"]["labels"]
    assert labels[LABEL] == str(_expected_shard(uid))


def test_namespaced_shards_label_in_each_watched_namespace_only(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    for namespace in ("team-a", "team-b", "elsewhere"):
        cluster.namespace(namespace)
    scope = ("--namespace", "team-a", "--namespace", "team-b")
    for index in range(2):
        start_operator(*scope, SWARM_SHARD=f"{index}/2", SWARM_OPERATOR_ID=f"e2e-{index}")
    names = [("team-a", "a0"), ("team-a", "a1"), ("team-b", "b0"), ("team-b", "b1"), ("elsewhere", "x")]
    for namespace, name in names:
        cluster.apply(swarm(name, namespace=namespace, agents=1))
    for namespace, name in names[:-1]:
        cluster.wait_condition(namespace, name, "Ready", timeout=120)
        body = cluster.get(namespace, name) or {}
        uid = body["metadata"]["uid"]
        expected = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") % 2
        assert body["metadata"]["labels"][LABEL] == str(expected)
        (sandbox,) = _sandboxes_by_uid(e2b, alive_only=False)[uid]
        assert sandbox["metadata"]["claudeswarm.io/operator"] == f"e2e-{expected}"
    outside = cluster.get("elsewhere", "x") or {}  # a namespace no shard watches: not touched
    assert LABEL not in (outside["metadata"].get("labels") or {}) and not outside.get("status")
