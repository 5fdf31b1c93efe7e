"""Day-2 operations end to end: health and self-healing, scaling, suspend, metrics, Events."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import Cluster, swarm, wait_for
from tests.e2e.test_lifecycle import _panes, _sandbox_shell

pytestmark = pytest.mark.e2e

FAST = {"intervalSeconds": 5}


def _kill_agent(e2b: Any, key: str, cluster: Cluster, name: str, index: int) -> None:
    body = cluster.get("default", name)
    from swarm_operator import bootstrap

    uid = body["metadata"]["uid"]
    socket_name = bootstrap.socket_name("default", name, uid)
    session = bootstrap.session_name("default", name, uid)
    _sandbox_shell(
        e2b,
        key,
        body["status"]["sandbox"]["id"],
        f"kill $(tmux -L {socket_name} list-panes -s -t ={session} -F '#{{pane_pid}}' | sed -n {index + 1}p)",
    )


def _item(cluster: Cluster, name: str, index: int) -> dict[str, Any]:
    return cluster.status("default", name)["agents"]["items"][index]


def test_dead_agent_is_seen_within_one_interval_when_not_restarted(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("frail", agents=2, healthCheck={**FAST, "restartDeadAgents": False}))
    cluster.wait_condition("default", "frail", "Ready")
    _kill_agent(e2b, e2b_api_key, cluster, "frail", 1)
    killed_at = time.monotonic()
    cluster.wait_condition("default", "frail", "AgentsReady", "False", reason="AgentsDegraded", timeout=5 + 3)
    assert time.monotonic() - killed_at <= 5 + 1 + 1  # interval + 1 s (+1 s for polling)
    status = cluster.status("default", "frail")
    assert status["phase"] == "Degraded"
    assert status["health"]["status"] == "Unhealthy"
    assert [i["state"] for i in status["agents"]["items"]] == ["Running", "Dead"]
    assert status["agents"]["summary"] == "1/2"


def test_dead_agent_is_restarted_until_max_restarts_then_stays_degraded(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("phoenix", agents=2, healthCheck={**FAST, "maxRestarts": 1}))
    cluster.wait_condition("default", "phoenix", "Ready")
    sandbox_id = cluster.status("default", "phoenix")["sandbox"]["id"]
    _kill_agent(e2b, e2b_api_key, cluster, "phoenix", 0)
    wait_for(lambda: _item(cluster, "phoenix", 0)["restarts"] == 1, 15, message="restart counted")
    cluster.wait_condition("default", "phoenix", "Ready")
    assert cluster.status("default", "phoenix")["metrics"]["restarts"] >= 1
    _kill_agent(e2b, e2b_api_key, cluster, "phoenix", 0)
    cluster.wait_condition("default", "phoenix", "AgentsReady", "False", reason="AgentsDegraded", timeout=15)
    time.sleep(6)  # another tick: over its budget the agent stays dead
    status = cluster.status("default", "phoenix")
    assert status["phase"] == "Degraded"
    assert status["agents"]["items"][0] == {**status["agents"]["items"][0], "state": "Dead", "restarts": 1}
    assert status["sandbox"]["id"] == sandbox_id
    reasons = {e.reason for e in cluster.events("default", "phoenix")}
    assert {"AgentRestarted", "Available", "AgentsDegraded"} <= reasons


def test_scale_in_place_keeps_the_sandbox(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("elastic", agents=2))
    cluster.wait_condition("default", "elastic", "Ready")
    sandbox_id = cluster.status("default", "elastic")["sandbox"]["id"]
    for agents in (5, 1):
        cluster.kubectl(
            "patch", "swarm", "elastic", "--type=merge", "-p", f'{{"spec": {{"agents": {agents}}}}}'
        )
        wait_for(
            lambda a=agents: (
                cluster.status("default", "elastic").get("agents", {}).get("summary") == f"{a}/{a}"
            ),
            30,
            message=f"{agents} agents",
        )
        cluster.wait_condition("default", "elastic", "Ready")
        assert cluster.status("default", "elastic")["sandbox"]["id"] == sandbox_id
        assert _panes(e2b, e2b_api_key, cluster, "default", "elastic") == ["0 sleep"] * agents
    assert len([s for s in e2b.inspect() if s["alive"]]) == 1


def test_suspend_pauses_and_resume_reverifies(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("sleepy", agents=2))
    cluster.wait_condition("default", "sleepy", "Ready")
    sandbox_id = cluster.status("default", "sleepy")["sandbox"]["id"]
    cluster.kubectl("patch", "swarm", "sleepy", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.wait_condition("default", "sleepy", "Suspended", "True")
    assert cluster.status("default", "sleepy")["phase"] == "Suspended"
    [record] = [s for s in e2b.inspect() if s["sandboxID"] == sandbox_id]
    assert record["state"] == "paused"
    cluster.kubectl("patch", "swarm", "sleepy", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    cluster.wait_condition("default", "sleepy", "Suspended", "False", reason="Resumed")
    cluster.wait_condition("default", "sleepy", "Ready")
    assert cluster.status("default", "sleepy")["sandbox"]["id"] == sandbox_id
    assert _panes(e2b, e2b_api_key, cluster, "default", "sleepy") == ["0 sleep"] * 2


def test_quiet_health_ticks_write_nothing(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    start_operator()
    cluster.apply(swarm("quiet", agents=1, healthCheck=FAST))
    cluster.wait_condition("default", "quiet", "Ready")
    # Ready records the setup run's verdict as the first health; the first probe then records the
    # first progress figures (new information, written once); from then on nothing changes.
    wait_for(
        lambda: (
            cluster.status("default", "quiet").get("health", {}).get("status") == "Healthy"
            and "progress" in cluster.status("default", "quiet")
        ),
        15,
        message="first health verdict and progress figures",
    )
    counter = cluster.emulator.emulator.counter
    before = counter.writes()
    time.sleep(11)  # two more ticks with nothing changed
    assert counter.writes() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_after_a_known_sequence(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    port = _free_port()
    start_operator(SWARM_METRICS_PORT=str(port))
    cluster.apply(swarm("counted-a", agents=1), swarm("counted-b", agents=1))
    cluster.wait_condition("default", "counted-a", "Ready")
    cluster.wait_condition("default", "counted-b", "Ready")
    cluster.kubectl("delete", "swarm", "counted-b", "--timeout=60s", timeout=70)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("swarm_sandboxes", namespace="default", phase="Ready") == 1
    assert value("swarm_sandbox_create_seconds_count") == 2
    assert value("swarm_sandbox_init_seconds_count") >= 2
    assert value("swarm_e2b_calls_total", operation="create", outcome="ok") == 2
    assert value("swarm_e2b_calls_total", operation="kill", outcome="ok") >= 1
    assert (
        value(
            "controller_runtime_reconcile_total",
            controller="swarmsandbox",
            handler="delete",
            result="success",
        )
        == 1
    )
    assert (
        value(
            "controller_runtime_reconcile_total",
            controller="swarmsandbox",
            handler="reconcile",
            result="success",
        )
        >= 2
    )
    build = [k for k in samples if k[0] == "swarm_build_info"]
    assert build and samples[build[0]] == 1
    assert not any("sbx" in str(k) or "counted-a" in str(k) for k in samples), "no per-resource labels"


def test_events_show_the_phase_transitions(cluster: Cluster, e2b: Any, start_operator: Any) -> None:
    start_operator()
    cluster.apply(swarm("storied", agents=1))
    cluster.wait_condition("default", "storied", "Ready")
    wait_for(lambda: cluster.events("default", "storied"), 10, message="events posted")
    messages = [e.message for e in cluster.events("default", "storied")]
    assert any("Initializing -> Ready" in m for m in messages)
    cluster.kubectl("patch", "swarm", "storied", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.wait_condition("default", "storied", "Suspended", "True")
    wait_for(
        lambda: any("Ready -> Suspended" in e.message for e in cluster.events("default", "storied")),
        10,
        message="suspend event",
    )


def test_liveness_probe_answers_with_the_operators_own_checks(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    port = _free_port()
    start_operator("--all-namespaces", "--liveness", f"http://127.0.0.1:{port}/healthz")
    cluster.apply(swarm("alive", agents=1))
    cluster.wait_condition("default", "alive", "Ready")
    answer = wait_for(
        lambda: _get_or_none(f"http://127.0.0.1:{port}/healthz"), 15, message="liveness endpoint"
    )
    assert answer.status_code == 200
    assert answer.json()["operator"] == {"e2bClients": 1, "resourcesTracked": 1}


def _get_or_none(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_label_selector_shards_resources_between_operators(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator("--all-namespaces", "--selector", "shard=a")
    mine, theirs = swarm("mine", agents=1), swarm("theirs", agents=1)
    mine["metadata"]["labels"] = {"shard": "a"}
    theirs["metadata"]["labels"] = {"shard": "b"}
    cluster.apply(mine, theirs)
    cluster.wait_condition("default", "mine", "Ready")
    time.sleep(2)
    assert cluster.status("default", "theirs") == {}
    assert len([s for s in e2b.inspect() if s["alive"]]) == 1


def test_template_change_switches_to_a_new_sandbox_then_kills_the_old(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("moving", agents=2, template="base"))
    cluster.wait_condition("default", "moving", "Ready")
    old = cluster.status("default", "moving")["sandbox"]
    assert old["template"] == "base"
    cluster.kubectl("patch", "swarm", "moving", "--type=merge", "-p", '{"spec": {"template": "other"}}')
    most_alive = 0

    def switched() -> bool:
        nonlocal most_alive
        most_alive = max(most_alive, len([s for s in e2b.inspect() if s["alive"]]))
        sandbox = cluster.status("default", "moving").get("sandbox") or {}
        ready = cluster.condition("default", "moving", "Ready") or {}
        return sandbox.get("template") == "other" and ready.get("status") == "True"

    wait_for(switched, 60, interval=0.05, message="moved to the new template")
    new = cluster.status("default", "moving")["sandbox"]
    assert new["id"] != old["id"]
    wait_for(
        lambda: [s["sandboxID"] for s in e2b.inspect() if s["alive"]] == [new["id"]],
        10,
        message="old sandbox killed",
    )
    assert most_alive <= 2, "at most one extra sandbox, only during the switch"
    [record] = [s for s in e2b.inspect() if s["alive"]]
    assert record["templateID"] == "other"
    assert _panes(e2b, e2b_api_key, cluster, "default", "moving") == ["0 sleep"] * 2
    assert any(e.reason == "Replaced" for e in cluster.events("default", "moving"))
