"""The operator side of the health probe, without kopf or a sandbox: what a probe report becomes in
status (dead agents are never shown alive), when a quiet tick writes nothing, and when self-heal runs."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_lifecycle import REF, SPEC, Recorder, _conditions, _spec, _status
from tests.unit.test_quarantine import ProbedBackend, _ready

from swarm_operator import lifecycle
from swarm_operator.bootstrap._report import MARK_BEGIN, MARK_END


def _probe(alive: int, restarts: int = 0) -> str:
    panes = [
        {
            "index": i,
            "target": f"s:0.{i}",
            "pane_id": f"%{i}",
            "pid": 100 + i,
            "alive": i < alive,
            "dead": i >= alive,
            "exit_status": None if i < alive else 1,
            "command": "sleep",
            "restarts": restarts,
        }
        for i in range(2)
    ]
    body = {
        "kind": "probe",
        "version": 1,
        "session": "s",
        "server": True,
        "agents": {"desired": 2, "alive": alive, "dead": 2 - alive},
        "missing": [],
        "extra": 0,
        "panes": panes,
        "registry": None,
        "mcp": None,
    }
    return f"{MARK_BEGIN}\n{json.dumps(body)}\n{MARK_END}\n"


async def _check(runtime: Any, recorder: Recorder, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    await lifecycle.check_health(REF, _spec(spec), _status(recorder.status()), runtime)
    return recorder.status()


class CountingBackend(ProbedBackend):
    """Counts setup runs (everything that is not a probe or the identity check)."""

    setup_runs = 0

    async def run(self, sandbox_id: str, script: str, envs: Any = None, **kw: Any) -> Any:
        if "---- probe:" not in script and "swarm-identity" not in script:
            self.setup_runs += 1
        return await super().run(sandbox_id, script, envs, **kw)


NO_HEAL = {**SPEC, "healthCheck": {"restartDeadAgents": False}}


async def test_a_dead_agent_is_reported_dead_and_the_resource_degraded() -> None:
    backend, recorder = CountingBackend(), Recorder()
    runtime = await _ready(backend, recorder)
    backend.probes = [_probe(alive=1)]
    status = await _check(runtime, recorder, NO_HEAL)
    agents = _conditions(status)["AgentsReady"]
    assert (agents["status"], agents["reason"]) == ("False", "AgentsDegraded")
    assert "1/2 agents running" in agents["message"] and "agent 1 dead" in agents["message"]
    assert status["phase"] == "Degraded"
    assert status["health"]["reason"] == "AgentsDegraded"
    items = {i["id"]: i["state"] for i in status["agents"]["items"]}
    assert items == {0: "Running", 1: "Dead"}
    assert status["agents"]["ready"] == 1


async def test_healthy_probes_write_once_then_nothing() -> None:
    backend, recorder = CountingBackend(), Recorder()
    runtime = await _ready(backend, recorder)
    backend.probes = [_probe(alive=2), _probe(alive=2), _probe(alive=2)]
    await _check(runtime, recorder)
    writes = len(recorder.patches)
    await _check(runtime, recorder)
    await _check(runtime, recorder)
    assert len(recorder.patches) == writes, "a quiet tick wrote status"
    assert recorder.status()["phase"] == "Ready"


async def test_self_heal_reruns_setup_only_when_allowed_and_within_budget() -> None:
    backend, recorder = CountingBackend(), Recorder()
    runtime = await _ready(backend, recorder)
    runs = backend.setup_runs
    # restartDeadAgents off: a dead agent is reported, never restarted.
    backend.probes = [_probe(alive=1)]
    await _check(runtime, recorder, NO_HEAL)
    assert backend.setup_runs == runs
    healing = {**SPEC, "healthCheck": {"restartDeadAgents": True, "maxRestarts": 2}}
    # Within the budget: the setup script reruns (it restarts the pane in place) and the agents are back.
    backend.probes = [_probe(alive=1, restarts=1)]
    status = await _check(runtime, recorder, healing)
    assert backend.setup_runs == runs + 1
    assert _conditions(status)["AgentsReady"]["status"] == "True"
    # Budget spent: left dead, not rerun.
    backend.probes = [_probe(alive=1, restarts=2)]
    status = await _check(runtime, recorder, healing)
    assert backend.setup_runs == runs + 1
    assert _conditions(status)["AgentsReady"]["reason"] == "AgentsDegraded"
