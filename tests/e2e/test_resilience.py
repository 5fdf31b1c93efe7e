"""Never leak, never duplicate, never hang: the operator under kills, faults and bad credentials."""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import httpx
import pytest
from e2b import Sandbox
from tests.e2e.conftest import E2E_OPT_INS, Cluster, swarm, wait_for

pytestmark = pytest.mark.e2e


def _alive(e2b: Any) -> list[dict[str, Any]]:
    return [s for s in e2b.inspect() if s["alive"]]


def _stats(handle: Any) -> dict[str, Any]:
    return httpx.get(f"{handle.url}/_emulator/stats", timeout=10).json()


def _tagged_sandbox(e2b: Any, api_key: str, uid: str) -> str:
    sandbox = Sandbox.create(
        "base",
        api_key=api_key,
        api_url=e2b.url,
        sandbox_url=e2b.url,
        timeout=300,
        metadata={
            "claudeswarm.io/uid": uid,
            "claudeswarm.io/operator": "e2e",
            "claudeswarm.io/namespace": "default",
            "claudeswarm.io/name": "ghost",
        },
    )
    return sandbox.sandbox_id


def test_sweeper_kills_orphans_but_not_released_sandboxes(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator(SWARM_SWEEP_INTERVAL_SECONDS="1", SWARM_SWEEP_GRACE_SECONDS="1")
    # Orphan needs the team's own key (never the operator's default: OrphanNotAllowed).
    cluster.secret("default", "team-key", {"api-key": e2b_api_key})
    cluster.apply(
        swarm(
            "kept",
            agents=1,
            deletionPolicy="Orphan",
            e2b={"apiKeySecretRef": {"name": "team-key", "key": "api-key"}},
        ),
        swarm("live", agents=1),
    )
    cluster.wait_condition("default", "kept", "Ready")
    cluster.wait_condition("default", "live", "Ready")
    released = cluster.status("default", "kept")["sandbox"]["id"]
    live = cluster.status("default", "live")["sandbox"]["id"]
    cluster.kubectl("delete", "swarm", "kept", "--timeout=60s", timeout=70)
    orphan = _tagged_sandbox(e2b, e2b_api_key, "uid-of-a-resource-that-is-gone")
    wait_for(lambda: orphan not in {s["sandboxID"] for s in _alive(e2b)}, 20, message="orphan swept")
    time.sleep(2.5)  # two more sweeps: the released and the live sandbox must survive them
    assert {s["sandboxID"] for s in _alive(e2b)} == {released, live}


def test_lease_is_renewed_and_expires_once_the_operator_is_gone(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    operator = start_operator(SWARM_LEASE_SECONDS="6", SWARM_LEASE_RENEW_SECONDS="1")
    cluster.apply(swarm("leased", agents=1))
    cluster.wait_condition("default", "leased", "Ready")
    sandbox_id = cluster.status("default", "leased")["sandbox"]["id"]
    time.sleep(8)  # longer than one lease: only renewals keep it alive
    assert sandbox_id in {s["sandboxID"] for s in _alive(e2b)}
    operator.proc.send_signal(signal.SIGKILL)
    operator.proc.wait(10)
    wait_for(lambda: not _alive(e2b), 12, message="sandbox expired after its lease")


def test_faults_at_twenty_percent_converge_without_leaks(
    cluster: Cluster, e2b_emulator_factory: Any, start_operator: Any
) -> None:
    faulty = e2b_emulator_factory(fault_rate=0.2, seed=7, **E2E_OPT_INS)
    start_operator(E2B_API_URL=faulty.url, E2B_SANDBOX_URL=faulty.url)
    names = [f"flaky-{i}" for i in range(5)]
    cluster.apply(*(swarm(n, agents=2) for n in names))
    for name in names:
        cluster.wait_condition("default", name, "Ready", timeout=120)
    live = {cluster.status("default", n)["sandbox"]["id"] for n in names}
    assert {s["sandboxID"] for s in _alive(faulty)} == live
    cluster.kubectl("delete", "swarm", *names, "--timeout=120s", timeout=130)
    wait_for(lambda: not _alive(faulty), 30, message="all sandboxes gone")
    assert _stats(faulty)["faultsTotal"] > 0, "the fault injector really fired"


def test_wrong_api_key_is_authentication_failed_without_hot_loop(
    cluster: Cluster, e2b_emulator_factory: Any, e2b_api_key: str, start_operator: Any
) -> None:
    e2b = e2b_emulator_factory(api_key=e2b_api_key, **E2E_OPT_INS)
    start_operator(E2B_API_URL=e2b.url, E2B_SANDBOX_URL=e2b.url)
    cluster.secret("default", "bad-key", {"api-key": "e2b_" + "f" * 40})
    cluster.apply(swarm("denied", agents=1, e2b={"apiKeySecretRef": {"name": "bad-key", "key": "api-key"}}))
    cond = cluster.wait_condition("default", "denied", "Ready", "False", reason="AuthenticationFailed")
    assert "key" in cond["message"].lower()
    assert cluster.status("default", "denied")["phase"] == "Failed"
    before = _stats(e2b)["total"]
    time.sleep(3)
    assert _stats(e2b)["total"] - before <= 1, "no fast retries with a rejected key"


def test_quota_exceeded_is_reported_and_recovers_when_capacity_returns(
    cluster: Cluster, e2b_emulator_factory: Any, start_operator: Any
) -> None:
    limited = e2b_emulator_factory(quota=1, **E2E_OPT_INS)
    start_operator(E2B_API_URL=limited.url, E2B_SANDBOX_URL=limited.url, SWARM_QUOTA_RETRY_SECONDS="2")
    cluster.apply(swarm("first", agents=1))
    cluster.wait_condition("default", "first", "Ready")
    cluster.apply(swarm("second", agents=1))
    cond = cluster.wait_condition("default", "second", "Synced", "False", reason="QuotaExceeded")
    assert "concurrent" in cond["message"].lower() or "quota" in cond["message"].lower()
    assert cluster.status("default", "second")["phase"] == "Pending"
    cluster.kubectl("delete", "swarm", "first", "--timeout=60s", timeout=70)
    cluster.wait_condition("default", "second", "Ready", timeout=90)
    assert len([s for s in limited.inspect() if s["alive"]]) == 1


def test_sigterm_stops_cleanly_with_exit_zero(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    operator = start_operator()
    cluster.apply(swarm("calm", agents=1))
    cluster.wait_condition("default", "calm", "Ready")
    assert operator.stop(timeout=20) == 0
    assert "Traceback" not in operator.log()


@pytest.mark.timeout(600)
def test_chaos_operator_killed_at_random_moments_converges_to_one_sandbox_each(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    """20 resources; the operator SIGKILLed 10 times across create, init and delete, restarted each time.

    In the end every remaining resource is Ready, every deleted one is gone, and the emulator holds
    exactly one sandbox per live resource and none else.
    """
    rng = random.Random(20261126)
    names = [f"chaos-{i:02d}" for i in range(20)]
    doomed = set(rng.sample(names, 6))
    settings = {"SWARM_LEASE_SECONDS": "600", "SWARM_SWEEP_INTERVAL_SECONDS": "3600"}
    operator = start_operator(**settings)
    pending = list(names)
    deleted_requested: set[str] = set()
    for kill in range(10):
        if pending:
            batch, pending = pending[:4], pending[4:]
            cluster.apply(*(swarm(n, agents=2) for n in batch))
        if kill >= 4:  # deletes land while creates and inits are still in flight
            for name in sorted(doomed - deleted_requested)[:2]:
                cluster.kubectl("delete", "swarm", name, "--wait=false")
                deleted_requested.add(name)
        time.sleep(rng.uniform(0.05, 1.2))
        operator.proc.send_signal(signal.SIGKILL)
        operator.proc.wait(10)
        operator = start_operator(**settings)
    for name in sorted(doomed - deleted_requested):
        cluster.kubectl("delete", "swarm", name, "--wait=false")
    survivors = [n for n in names if n not in doomed]
    for name in survivors:
        cluster.wait_condition("default", name, "Ready", timeout=120)
    for name in sorted(doomed):
        wait_for(lambda n=name: cluster.get("default", n) is None, 60, message=f"{name} deleted")

    def converged() -> bool:
        alive = _alive(e2b)
        by_uid: dict[str, int] = {}
        for sandbox in alive:
            uid = sandbox["metadata"]["claudeswarm.io/uid"]
            by_uid[uid] = by_uid.get(uid, 0) + 1
        return len(alive) == len(survivors) and all(v == 1 for v in by_uid.values())

    wait_for(converged, 60, message="one sandbox per live resource and no other")
    tracked = {cluster.status("default", n)["sandbox"]["id"] for n in survivors}
    assert tracked == {s["sandboxID"] for s in _alive(e2b)}


def test_unknown_template_is_template_not_found_and_creates_nothing(
    cluster: Cluster, e2b_emulator_factory: Any, sandbox_home: Any, start_operator: Any
) -> None:
    strict = e2b_emulator_factory(templates={"base"}, home_template=sandbox_home, **E2E_OPT_INS)
    start_operator(E2B_API_URL=strict.url, E2B_SANDBOX_URL=strict.url)
    cluster.apply(swarm("typo", agents=1, template="bsae"))
    cond = cluster.wait_condition("default", "typo", "Ready", "False", reason="TemplateNotFound")
    assert "bsae" in cond["message"] and "spec.template" in cond["message"]
    assert cluster.status("default", "typo")["phase"] == "Failed"
    creates = _stats(strict)["operations"].get("sandbox.create", 0)
    time.sleep(3)
    assert _stats(strict)["operations"].get("sandbox.create", 0) == creates, "permanent: no retries"
    assert not [s for s in strict.inspect() if s["alive"]]


def test_creation_rate_limit_throttles_then_proceeds(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    start_operator(SWARM_CREATIONS_PER_MINUTE="6")  # a burst of 6, then one every 10 s
    names = [f"queued-{i}" for i in range(7)]
    cluster.apply(*(swarm(n, agents=1) for n in names))
    throttled = wait_for(
        lambda: [
            n
            for n in names
            if (cluster.condition("default", n, "SandboxCreated") or {}).get("reason") == "RateLimited"
        ],
        30,
        message="one resource throttled",
    )
    assert len(throttled) == 1
    message = cluster.condition("default", throttled[0], "SandboxCreated")["message"]
    assert "6/min" in message
    for name in names:
        cluster.wait_condition("default", name, "Ready", timeout=40)
    assert len([s for s in e2b.inspect() if s["alive"]]) == 7
