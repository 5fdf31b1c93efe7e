"""Safe to share: the operator's default E2B key is spent only where the platform admin allows, one
namespace cannot take every sandbox, Orphan never leaves the platform paying, and the sweeper's
"released" verdict is the operator's own record, which no agent can forge.

The real operator process against both emulators, with the restrictive tenancy settings (the
harness opts into permissive ones for every other test).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from e2b import Sandbox
from tests.e2e.conftest import OPERATOR_NAMESPACE, Cluster, swarm, wait_for

pytestmark = pytest.mark.e2e

#: The operator's own defaults, spelled out (the harness sets permissive ones for other tests).
STRICT = {
    "SWARM_DEFAULT_KEY_NAMESPACES": "default",
    "SWARM_DEFAULT_KEY_TEMPLATES": "",
    "SWARM_MAX_SANDBOXES_PER_NAMESPACE": "20",
}
OWN_KEY = {"apiKeySecretRef": {"name": "team-key", "key": "api-key"}}
#: Where the operator's in-sandbox released mark used to be: any agent can create this file.
FORGED_MARK = "$HOME/.swarm-released"


def _creates(e2b: Any) -> int:
    stats = httpx.get(f"{e2b.url}/_emulator/stats", timeout=10).json()
    return int(stats["operations"].get("sandbox.create", 0))


def _alive(e2b: Any) -> set[str]:
    return {s["sandboxID"] for s in e2b.inspect() if s["alive"]}


def _failed(cluster: Cluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    cond = cluster.wait_condition(namespace, name, "Ready", "False", reason=reason)
    status = cluster.status(namespace, name)
    assert status["phase"] == "Failed" and "sandbox" not in status, status
    return cond


def test_default_key_outside_the_allowed_namespaces_gets_a_stable_reason_and_no_sandbox(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    operator = start_operator(**STRICT)
    cluster.namespace("team-x")
    counter = cluster.emulator.emulator.counter
    secret_reads = counter.count("get", "secrets")
    cluster.apply(swarm("free-ride", "team-x", agents=1))
    cond = _failed(cluster, "team-x", "free-ride", "DefaultKeyNotAllowed")
    assert "SWARM_DEFAULT_KEY_NAMESPACES" in cond["message"] and "spec.e2b.apiKeySecretRef" in cond["message"]
    time.sleep(1.5)  # retries would show here: it is terminal
    assert _creates(e2b) == 0 and not _alive(e2b), "the E2B emulator saw no create"
    assert counter.count("get", "secrets") == secret_reads, "no Secret was read for it"
    assert any(e.reason == "DefaultKeyNotAllowed" for e in cluster.events("team-x", "free-ride"))

    # Terminal until the spec changes: naming the team's own key makes it Ready.
    cluster.secret("team-x", "team-key", {"api-key": e2b_api_key})
    cluster.apply(swarm("free-ride", "team-x", agents=1, e2b=OWN_KEY))
    cluster.wait_condition("team-x", "free-ride", "Ready")
    assert _creates(e2b) == 1
    assert counter.count("get", "secrets") > secret_reads  # the count above could have seen one
    # The default namespace (the quick start's) still uses the default key.
    cluster.apply(swarm("quick-start", agents=1))
    cluster.wait_condition("default", "quick-start", "Ready")
    assert "Traceback" not in operator.log()

    # ... or until the policy changes: the admin allows team-y, the operator restarts with it.
    cluster.namespace("team-y")
    cluster.apply(swarm("waits-for-policy", "team-y", agents=1))
    _failed(cluster, "team-y", "waits-for-policy", "DefaultKeyNotAllowed")
    operator.stop()
    start_operator(**{**STRICT, "SWARM_DEFAULT_KEY_NAMESPACES": "default,team-y"})
    cluster.wait_condition("team-y", "waits-for-policy", "Ready")


def test_the_per_namespace_cap_holds(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    start_operator(SWARM_MAX_SANDBOXES_PER_NAMESPACE="2", SWARM_CREATIONS_PER_MINUTE="1000")
    cluster.namespace("team-b")
    cluster.apply(*(swarm(f"capped-{i}", agents=1) for i in range(3)), swarm("elsewhere", "team-b", agents=1))
    names = ("capped-0", "capped-1", "capped-2")

    def ready_ones() -> list[str]:
        return [n for n in names if (c := cluster.condition("default", n, "Ready")) and c["status"] == "True"]

    ready = wait_for(lambda: r if len(r := ready_ones()) == 2 else None, 60, message="two of three Ready")
    (waiting,) = set(names) - set(ready)
    cond = cluster.wait_condition("default", waiting, "Synced", "False", reason="RateLimited")
    assert "namespace" in cond["message"]
    cluster.wait_condition("team-b", "elsewhere", "Ready")  # the cap is per namespace
    time.sleep(2)  # several retries later, still capped
    assert _creates(e2b) == 3 and len(_alive(e2b)) == 3
    assert cluster.condition("default", waiting, "Ready")["status"] == "False"
    # A freed slot goes to the one waiting.
    cluster.kubectl("delete", "swarm", ready[0], "--timeout=60s", timeout=70)
    cluster.wait_condition("default", waiting, "Ready", timeout=60)
    assert len(_alive(e2b)) == 3


def test_orphan_with_the_default_key_is_refused(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    start_operator(**STRICT)
    cluster.apply(
        swarm("keep-on-us", agents=1, deletionPolicy="Orphan"),
        swarm("other-template", agents=1, template="big-expensive"),
    )
    cond = _failed(cluster, "default", "keep-on-us", "OrphanNotAllowed")
    assert "spec.deletionPolicy" in cond["message"]
    cond = _failed(cluster, "default", "other-template", "TemplateNotAllowed")
    assert "spec.template" in cond["message"] and "big-expensive" in cond["message"]
    assert _creates(e2b) == 0
    cluster.kubectl("delete", "swarm", "keep-on-us", "other-template", "--timeout=30s", timeout=40)
    assert cluster.get("default", "keep-on-us") is None and not _alive(e2b)


def test_an_agent_forging_the_released_mark_does_not_stop_the_sweeper(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    sweep = {"SWARM_SWEEP_INTERVAL_SECONDS": "1", "SWARM_SWEEP_GRACE_SECONDS": "1"}
    first = start_operator(**STRICT, **sweep)
    cluster.secret("default", "team-key", {"api-key": e2b_api_key})
    forger_agent = {"command": "sh", "args": ["-c", f"touch {FORGED_MARK}; exec sleep 100000"]}
    cluster.apply(
        swarm("forger", agents=1, agent=forger_agent),
        swarm("kept", agents=1, deletionPolicy="Orphan", e2b=OWN_KEY),
    )
    cluster.wait_condition("default", "forger", "Ready")
    cluster.wait_condition("default", "kept", "Ready")
    forged = cluster.status("default", "forger")["sandbox"]["id"]
    kept = cluster.status("default", "kept")["sandbox"]["id"]
    sandbox = Sandbox.connect(forged, api_key=e2b_api_key, api_url=e2b.url, sandbox_url=e2b.url)
    assert (
        sandbox.commands.run(f"test -e {FORGED_MARK} && echo forged", timeout=20).stdout.strip() == "forged"
    )

    # A legitimate release (its own key): recorded by the operator, outside every sandbox.
    cluster.kubectl("delete", "swarm", "kept", "--timeout=60s", timeout=70)
    record = cluster.core.read_namespaced_config_map("e2e-released", OPERATOR_NAMESPACE)
    assert set(record.data) == {kept}

    # The forger's resource disappears without a teardown (a finalizer removed by hand while the
    # operator was down): its sandbox is an orphan that holds the forged mark.
    first.stop()
    cluster.kubectl("patch", "swarm", "forger", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("delete", "swarm", "forger", "--timeout=30s", timeout=40)
    assert cluster.get("default", "forger") is None and forged in _alive(e2b)
    second = start_operator(**STRICT, **sweep)
    wait_for(lambda: forged not in _alive(e2b), 30, message="the forged orphan swept")
    time.sleep(2.5)  # more sweeps: the released sandbox survives them
    assert kept in _alive(e2b)
    assert "killed orphaned sandbox " + forged in second.log()
