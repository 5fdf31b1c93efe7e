"""SwarmSandbox lifecycle end to end: the real operator process, kubectl, both emulators."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2b import Sandbox
from tests.e2e.conftest import Cluster, swarm, wait_for

from swarm_operator import bootstrap

pytestmark = pytest.mark.e2e


def _sandbox_shell(e2b: Any, api_key: str, sandbox_id: str, command: str) -> str:
    sandbox = Sandbox.connect(sandbox_id, api_key=api_key, api_url=e2b.url, sandbox_url=e2b.url)
    return sandbox.commands.run(command, timeout=20).stdout


def _panes(e2b: Any, api_key: str, cluster: Cluster, namespace: str, name: str) -> list[str]:
    body = cluster.get(namespace, name)
    assert body is not None
    uid = body["metadata"]["uid"]
    session = bootstrap.session_name(namespace, name, uid)
    socket = bootstrap.socket_name(namespace, name, uid)
    out = _sandbox_shell(
        e2b,
        api_key,
        body["status"]["sandbox"]["id"],
        f"tmux -L {socket} list-panes -s -t ={session} -F '#{{pane_dead}} #{{pane_current_command}}'",
    )
    return out.splitlines()


def _running(e2b: Any) -> list[dict[str, Any]]:
    return [s for s in e2b.inspect() if s["alive"]]


def test_apply_ready_with_live_panes_then_delete_kills_sandbox(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    operator = start_operator()
    cluster.apply(swarm("alpha", agents=3))
    cluster.kubectl("wait", "--for=condition=Ready", "swarm/alpha", "--timeout=60s", timeout=70)

    body = cluster.get("default", "alpha")
    status = body["status"]
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["agents"]["desired"] == 3 and status["agents"]["ready"] == 3
    assert status["agents"]["summary"] == "3/3"
    assert [item["state"] for item in status["agents"]["items"]] == ["Running"] * 3
    conditions = {c["type"]: c for c in status["conditions"]}
    for type_ in ("SandboxCreated", "AgentsReady", "Ready", "Synced"):
        assert conditions[type_]["status"] == "True", conditions[type_]
        assert conditions[type_]["observedGeneration"] == body["metadata"]["generation"]
    assert conditions["Ready"]["reason"] == "Available"
    assert {"create", "init"} <= set(status["metrics"]["stepSeconds"])
    assert status["sandbox"]["startedAt"] and status["sandbox"]["expiresAt"]

    # One sandbox, tagged with the resource's identity, with three live agent panes inside.
    [sandbox] = _running(e2b)
    assert sandbox["sandboxID"] == status["sandbox"]["id"]
    assert sandbox["metadata"] == {
        "claudeswarm.io/uid": body["metadata"]["uid"],
        "claudeswarm.io/namespace": "default",
        "claudeswarm.io/name": "alpha",
        "claudeswarm.io/operator": "e2e",
    }
    panes = _panes(e2b, e2b_api_key, cluster, "default", "alpha")
    assert panes == ["0 sleep"] * 3

    printed = cluster.kubectl("get", "swarm", "alpha").stdout
    assert "Ready" in printed and "3/3" in printed and sandbox["sandboxID"] in printed

    cluster.kubectl("delete", "swarm", "alpha", "--timeout=60s", timeout=70)
    assert cluster.get("default", "alpha") is None
    wait_for(lambda: not _running(e2b), 10, message="sandbox killed")
    log = operator.log()
    assert "Traceback" not in log


def test_orphan_policy_leaves_sandbox_running(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    # Orphan needs the team's own key (never the operator's default: OrphanNotAllowed).
    cluster.secret("default", "team-key", {"api-key": e2b_api_key})
    cluster.apply(
        swarm(
            "keep",
            agents=1,
            deletionPolicy="Orphan",
            e2b={"apiKeySecretRef": {"name": "team-key", "key": "api-key"}},
        )
    )
    cluster.wait_condition("default", "keep", "Ready")
    sandbox_id = cluster.status("default", "keep")["sandbox"]["id"]
    cluster.kubectl("delete", "swarm", "keep", "--timeout=60s", timeout=70)
    assert cluster.get("default", "keep") is None
    assert [s["sandboxID"] for s in _running(e2b)] == [sandbox_id]


def test_missing_secret_reported_then_ready_once_created(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(
        swarm(
            "needs-key",
            agents=1,
            agent={
                "command": "sleep",
                "args": ["100000"],
                "env": [
                    {
                        "name": "ANTHROPIC_API_KEY",
                        "valueFrom": {"secretKeyRef": {"name": "anthropic", "key": "token"}},
                    }
                ],
            },
        )
    )
    cond = cluster.wait_condition("default", "needs-key", "Ready", "False", reason="SecretNotFound")
    assert "anthropic" in cond["message"] and "token" in cond["message"]
    assert cluster.status("default", "needs-key")["phase"] == "Pending"
    assert not _running(e2b)
    cluster.secret("default", "anthropic", {"token": "sk-ant-test-value-123"})
    cluster.wait_condition("default", "needs-key", "Ready", timeout=60)


def test_unpinned_coordinator_install_is_invalid_spec_and_creates_nothing(
    cluster: Cluster, e2b: Any, start_operator: Any
) -> None:
    start_operator()
    cluster.apply(swarm("loose", coordinator={"enabled": True, "install": "claudeswarm>=0.1"}))
    cond = cluster.wait_condition("default", "loose", "Ready", "False", reason="InvalidSpec")
    assert "spec.coordinator.install" in cond["message"]
    assert cluster.status("default", "loose")["phase"] == "Failed"
    assert not e2b.inspect(include_dead=True)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"agents": 0}, "spec.agents"),
        ({"agents": 101}, "spec.agents"),
        ({"deletionPolicy": "Keep"}, "spec.deletionPolicy"),
        (
            {"agent": {"command": "sleep", "env": [{"name": "LD_PRELOAD", "value": "x"}]}},
            "starting with SWARM_, LD_",
        ),
    ],
)
def test_schema_invalid_specs_are_refused_with_422(
    cluster: Cluster, spec: dict[str, Any], field: str
) -> None:
    manifest = swarm("bad", **spec)
    proc = cluster.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(manifest), check=False)
    assert proc.returncode != 0
    assert field in proc.stderr
    assert cluster.get("default", "bad") is None


def test_canary_secret_never_leaves_the_agents_environment(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    canary = "canary-7f3a9c1e5b2d4680"
    operator = start_operator()
    cluster.secret("default", "agent-keys", {"anthropic": canary})
    cluster.apply(
        swarm(
            "secretive",
            agents=2,
            agent={
                "command": "sleep",
                "args": ["100000"],
                "env": [
                    {
                        "name": "ANTHROPIC_API_KEY",
                        "valueFrom": {"secretKeyRef": {"name": "agent-keys", "key": "anthropic"}},
                    },
                    {"name": "PLAIN", "value": "visible"},
                ],
            },
        )
    )
    cluster.wait_condition("default", "secretive", "Ready")
    body = cluster.get("default", "secretive")
    # The agents do receive it, through their environment...
    sandbox_id = body["status"]["sandbox"]["id"]
    session = bootstrap.session_name("default", "secretive", body["metadata"]["uid"])
    socket = bootstrap.socket_name("default", "secretive", body["metadata"]["uid"])
    pane_pid = _sandbox_shell(
        e2b, e2b_api_key, sandbox_id, f"tmux -L {socket} list-panes -t ={session} -F '#{{pane_pid}}'"
    ).split()[0]
    environ = _sandbox_shell(e2b, e2b_api_key, sandbox_id, f"tr '\\0' '\\n' < /proc/{pane_pid}/environ")
    assert f"ANTHROPIC_API_KEY={canary}" in environ
    # ...and nowhere else: not the operator's log, Events, status, annotations, sandbox metadata,
    # create request or any command line the sandbox ran.
    assert canary not in operator.log()
    assert canary not in json.dumps(body)
    events = cluster.events("default", "secretive")
    assert events, "phase transitions post Events"
    assert canary not in json.dumps([e.to_dict() for e in events], default=str)
    [record] = _running(e2b)
    assert canary not in json.dumps(record["metadata"])
    assert canary not in json.dumps(record["createRequest"])
    assert canary not in json.dumps([c["argv"] for c in record["commands"]])


def test_same_name_in_two_namespaces_gets_two_sandboxes_and_sessions(
    cluster: Cluster, e2b: Any, e2b_api_key: str, start_operator: Any
) -> None:
    start_operator()
    cluster.namespace("team-a")
    cluster.namespace("team-b")
    cluster.apply(swarm("twin", "team-a", agents=1), swarm("twin", "team-b", agents=2))
    cluster.wait_condition("team-a", "twin", "Ready")
    cluster.wait_condition("team-b", "twin", "Ready")
    a, b = cluster.status("team-a", "twin"), cluster.status("team-b", "twin")
    assert a["sandbox"]["id"] != b["sandbox"]["id"]
    assert len(_running(e2b)) == 2
    assert _panes(e2b, e2b_api_key, cluster, "team-a", "twin") == ["0 sleep"]
    assert _panes(e2b, e2b_api_key, cluster, "team-b", "twin") == ["0 sleep"] * 2
